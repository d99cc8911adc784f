// Cleans one JSON record: trims strings, lower-cases the email, renames fields per config
// and drops the fields listed in config.drop.
const metadata = {
    component: 'normalize_record_js',
    description: 'Trim, rename and drop fields of a JSON record',
    inports: [{ name: 'record', type: 'object', required: true }],
    outports: ['record', 'rejected'],
    version: '1.0.0',
    tags: ['data', 'etl'],
};

function process(context) {
    const record = context.getInput('record');
    if (record === null || typeof record !== 'object' || Array.isArray(record)) {
        return { rejected: { reason: 'not an object', value: record } };
    }
    const rename = context.config.rename || {};
    const drop = new Set(context.config.drop || []);
    const out = {};
    for (let [key, value] of Object.entries(record)) {
        if (drop.has(key)) continue;
        if (typeof value === 'string') value = value.trim();
        if (key === 'email' && typeof value === 'string') value = value.toLowerCase();
        out[rename[key] || key] = value;
    }
    return { record: out };
}

module.exports = { metadata, process };
