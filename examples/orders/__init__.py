"""An order service written with faust-streaming, wired into durable-kafka through topics only.

``python -m examples.orders`` (or ``make orders``) runs it on the local broker: see ``__main__``.
The service (:mod:`.service`) publishes ``OrderPlaced`` and ``PaymentReceived`` records and folds
order results into a faust Table served by its web view; the engine side (:mod:`.engine`) starts
``process_order`` per order and routes payments by business key with trigger routes, and
publishes each ended order with a completion route. Neither side calls the other's API.
"""
