# Splits text into lower-case word tokens and counts them; config "min_length" drops short
# tokens and "stopwords" drops listed words.
__actor_metadata__ = {
    'component': 'tokenize',
    'description': 'Word tokens and their counts',
    'inports': ['text'],
    'outports': ['tokens', 'counts'],
}


def _words(text):
    word = []
    for ch in text:
        if ch.isalnum() or ch == "'":
            word.append(ch.lower())
        elif word:
            yield "".join(word).strip("'")
            word = []
    if word:
        yield "".join(word).strip("'")


def process(context):
    text = context.get_input("text", "")
    min_length = context.config.get("min_length", 1)
    stop = set(context.config.get("stopwords", []))
    tokens = [w for w in _words(text) if len(w) >= min_length and w not in stop]
    counts = {}
    for t in tokens:
        counts[t] = counts.get(t, 0) + 1
    context.send_output_sync("tokens", tokens)
    return {"counts": counts}
