# Validates an order and raises on bad input: the error reaches the host with its type,
# message and this file's line numbers.
@actor({
    "component": "validate_order",
    "description": "Raise ValueError for invalid orders",
    "inports": ["order"],
    "outports": ["order"],
})
def process(context):
    order = context.get_input("order")
    check_quantity(order)
    return {"order": order}


def check_quantity(order):
    quantity = order.get("quantity", 0)
    if quantity <= 0:
        raise ValueError("order %s: quantity must be positive, got %r" % (order.get("id"), quantity))
