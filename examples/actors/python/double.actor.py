@actor({"component": "double", "description": "...", "inports": ["input"], "outports": ["output"]})
async def process(context):
    await context.send_output("output", context.get_input("input") * 2)
    return {"status": "completed"}
