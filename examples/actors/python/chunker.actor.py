# Streams a list out in chunks, one output per chunk as soon as it is ready, then a
# summary. A host sees each chunk before the call ends.
@actor({
    "component": "chunker",
    "description": "Stream a list in fixed-size chunks",
    "inports": ["items"],
    "outports": ["chunk", "progress", "done"],
})
async def process(context):
    items = context.get_input("items", [])
    size = int(context.config.get("size", 2))
    total = len(items)
    for start in range(0, total, size):
        await context.send_output("chunk", items[start:start + size])
        await context.send_output("progress", {"sent": min(start + size, total), "total": total})
    context.log("chunked", total, "items")
    return {"done": {"chunks": (total + size - 1) // size}}
