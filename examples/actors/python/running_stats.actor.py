# Keeps a running count, sum, min and max of the numbers it receives, in actor state, and
# emits the current mean after every value.
@actor({
    "component": "running_stats",
    "description": "Running count/sum/min/max/mean over a stream of numbers",
    "inports": [{"name": "value", "type": "float", "required": True}],
    "outports": ["stats"],
})
async def process(context):
    value = context.get_input("value")
    stats = await context.get_state("stats", {"count": 0, "sum": 0, "min": None, "max": None})
    stats["count"] += 1
    stats["sum"] += value
    stats["min"] = value if stats["min"] is None else min(stats["min"], value)
    stats["max"] = value if stats["max"] is None else max(stats["max"], value)
    await context.set_state("stats", stats)
    await context.send_output("stats", dict(stats, mean=stats["sum"] / stats["count"]))
