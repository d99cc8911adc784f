// Validates an order and throws on bad input: the error reaches the host with its type,
// message and this file's line numbers.
const metadata = {
    component: 'validate_order_js',
    description: 'Throw a RangeError for invalid orders',
    inports: ['order'],
    outports: ['order'],
};

function checkQuantity(order) {
    const quantity = order.quantity || 0;
    if (quantity <= 0) {
        throw new RangeError(`order ${order.id}: quantity must be positive, got ${quantity}`);
    }
}

async function process(context) {
    const order = context.getInput('order');
    checkQuantity(order);
    return { order };
}
