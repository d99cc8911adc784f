# Cleans one JSON record: trims strings, lower-cases the email, renames fields per config,
# and drops the fields listed in config["drop"].
@actor(
    name="normalize_record",
    description="Trim, rename and drop fields of a JSON record",
    inports=[{"name": "record", "type": "object", "required": True}],
    outports=["record", "rejected"],
    version="1.0.0",
    tags=("data", "etl"),
    category="transform",
    config_schema={"rename": {"type": "object"}, "drop": {"type": "array"}},
)
def process(context):
    record = context.get_input("record")
    if not isinstance(record, dict):
        return {"rejected": {"reason": "not an object", "value": record}}
    rename = context.config.get("rename", {})
    drop = set(context.config.get("drop", []))
    out = {}
    for key, value in record.items():
        if key in drop:
            continue
        if isinstance(value, str):
            value = value.strip()
        if key == "email" and isinstance(value, str):
            value = value.lower()
        out[rename.get(key, key)] = value
    return {"record": out}
