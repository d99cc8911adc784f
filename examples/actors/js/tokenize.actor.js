/* Splits text into lower-case word tokens and counts them; config.minLength drops short
   tokens and config.stopwords drops listed words. */
const metadata = {
    "component": "tokenize_js",
    "description": `Word tokens and their counts`,
    "inports": ["text"],
    "outports": ["tokens", "counts"],
};

async function process(context) {
    const text = context.getInput('text', '');
    const minLength = context.config.minLength || 1;
    const stop = new Set(context.config.stopwords || []);
    const tokens = (text.toLowerCase().match(/[\p{L}\p{N}']+/gu) || [])
        .map((w) => w.replace(/^'+|'+$/g, ''))
        .filter((w) => w.length >= minLength && !stop.has(w));
    const counts = {};
    for (const t of tokens) counts[t] = (counts[t] || 0) + 1;
    context.sendOutput('tokens', tokens);
    return { counts };
}
