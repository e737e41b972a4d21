"""examples/orders end to end: a faust-streaming service drives the engine through topics only."""

from __future__ import annotations

from examples.orders.__main__ import EXPECTED, run


def test_orders_flow_from_faust_through_the_engine_and_back(hub_bootstrap):
    table = run(hub_bootstrap, pay_within_s=3.0, timeout=180.0)
    assert {k: table[k]["status"] for k in EXPECTED} == EXPECTED
    assert all(table[k]["runtimeStatus"] == "Completed" for k in EXPECTED)
    assert table["order-1"]["amount"] == 20.0
    assert table["order-2"]["amount"] == 10.0  # paid before it was placed: the event waited
    assert table["order-4"]["reason"] == "out of stock"
    assert table["_stock_widget"] == 2  # 5 - 2 - 1, order 3's two released after the timeout
