// Prices one validated order: streams the order with its total as soon as it is known,
// then returns the amount alone (for running statistics). Unknown SKUs use config.defaultPrice.
const metadata = {
    component: 'order_total_js',
    description: 'Total of an order from its quantity and a price list in config',
    inports: [{ name: 'order', type: 'object', required: true }],
    outports: ['priced', 'amount'],
};

async function process(context) {
    const order = context.getInput('order');
    const prices = context.config.prices || {};
    const price = prices[order.sku] ?? context.config.defaultPrice ?? 0;
    const total = Math.round(order.quantity * price * 100) / 100;
    await context.sendOutput('priced', { ...order, price, total });
    return { amount: total };
}
