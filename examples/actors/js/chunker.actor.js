// Streams a list out in chunks, one output per chunk as soon as it is ready, then a
// summary. The delay between chunks shows that outputs arrive before the call ends.
const metadata = {
    component: 'chunker_js',
    description: 'Stream a list in fixed-size chunks',
    inports: ['items'],
    outports: ['chunk', 'progress', 'done'],
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function process(context) {
    const items = context.getInput('items', []);
    const size = Number(context.config.size || 2);
    for (let start = 0; start < items.length; start += size) {
        context.sendOutput('chunk', items.slice(start, start + size));
        context.sendOutput('progress', { sent: Math.min(start + size, items.length), total: items.length });
        await sleep(Number(context.config.delayMs || 0));
    }
    context.log('chunked', items.length, 'items');
    return { done: { chunks: Math.ceil(items.length / size) } };
}
