const metadata = {
    component: 'double_js',
    description: 'Doubles a number',
    inports: ['input'],
    outports: ['output'],
};

async function process(context) {
    await context.sendOutput('output', context.getInput('input') * 2);
    return { status: 'completed' };
}
