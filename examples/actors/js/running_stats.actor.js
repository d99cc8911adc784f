// Running count/sum/min/max/mean over a stream of numbers, kept in actor state.
const metadata = {
    component: 'running_stats_js',
    description: 'Running count/sum/min/max/mean over a stream of numbers',
    inports: [{ name: 'value', type: 'float', required: true }],
    outports: ['stats'],
};

async function process(context) {
    const value = context.getInput('value');
    const stats = await context.getState('stats', { count: 0, sum: 0, min: null, max: null });
    stats.count += 1;
    stats.sum += value;
    stats.min = stats.min === null ? value : Math.min(stats.min, value);
    stats.max = stats.max === null ? value : Math.max(stats.max, value);
    await context.setState('stats', stats);
    await context.sendOutput('stats', { ...stats, mean: stats.sum / stats.count });
}
