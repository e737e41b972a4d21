"""``python -m examples.orders`` / ``make orders``: one order service run on the local broker.

It creates the service's topics, starts a durable-kafka worker in this process (the engine side,
:mod:`.engine`) and the faust service in a subprocess (:mod:`.service`), stocks two SKUs, then
drives the service through its HTTP API only and prints what happens:

  order 1   placed, then paid             -> Completed, "paid"
  order 2   paid BEFORE it is placed      -> the payment waits for the instance; "paid"
  order 3   placed, never paid            -> the timer wins; stock released; "expired"
  order 4   more than is in stock         -> "rejected"

The results come back from the faust Table (``GET /orders/``), which the faust agent filled from
the completion topic. Exit status 0 when every order ended as expected.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from durable_kafka import Client
from durable_kafka.entities import EntityInstanceId
from durable_kafka.streams.admin import delete_hub
from durable_kafka.streams.config import bootstrap_servers

from examples.orders.engine import ShopTopics, make_worker

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {"order-1": "paid", "order-2": "paid", "order-3": "expired", "order-4": "rejected"}


def say(message: str) -> None:
    print(f"[orders] {message}", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(url: str, body: dict[str, Any] | None = None, timeout: float = 10) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                 method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def _wait_for(what: str, check: Any, timeout: float, service: subprocess.Popen[bytes]) -> Any:
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while True:
        if service.poll() is not None:
            raise RuntimeError(f"the faust service exited ({service.returncode}) while waiting for {what}")
        try:
            value = check()
            if value:
                return value
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        if time.monotonic() - last > 5:
            say(f"  still waiting for {what} ...")
            last = time.monotonic()
        time.sleep(0.2)


def run(bootstrap: str, *, pay_within_s: float = 4.0, timeout: float = 120.0, keep: bool = False) -> dict[str, Any]:
    """Run the whole story once; returns the faust table's content (instance id -> result)."""
    hub = f"orders-{uuid.uuid4().hex[:8]}"
    topics = ShopTopics.of(hub)
    work = Path(tempfile.mkdtemp(prefix="orders-example-"))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(t, 1, 1) for t in topics.all()]).values():
        fut.result(30)
    say(f"topics {', '.join(topics.all())} on {bootstrap}")
    port = _free_port()
    env = {**os.environ, "DURABLE_KAFKA_BOOTSTRAP": bootstrap, "ORDERS_HUB": hub, "ORDERS_DATADIR": str(work / "faust"),
           "ORDERS_PAY_WITHIN_S": str(pay_within_s), "PYTHONPATH": str(ROOT)}
    log = open(work / "service.log", "wb")  # noqa: SIM115 - closed in finally
    service: subprocess.Popen[bytes] | None = None
    worker = make_worker(bootstrap, hub, str(work / "engine"))
    try:
        with worker, Client(bootstrap, hub=hub) as client:
            say(f"engine worker running on hub {hub}: routes Start(orders) and Raise(payments by order id), "
                "completion route -> order-results")
            for sku, qty in (("widget", 5), ("gadget", 1)):
                client.signal_entity(EntityInstanceId("stock", sku), "restock", qty)
            say("stock: widget x5, gadget x1")
            service = subprocess.Popen([sys.executable, "-m", "examples.orders.service", "worker", "-l", "warn",
                                        "--web-port", str(port), "--web-host", "127.0.0.1"],
                                       cwd=str(work), env=env, stdout=log, stderr=subprocess.STDOUT)
            base = f"http://127.0.0.1:{port}"
            _wait_for("the faust service's web view", lambda: _http(f"{base}/orders/") is not None, timeout, service)
            say(f"faust service pid {service.pid} up at {base}")

            say("POST /orders/ order 1 (widget x2)"); _http(f"{base}/orders/", {"order_id": 1, "sku": "widget", "qty": 2})  # noqa: E702
            _wait_for("order-1 RUNNING", lambda: client.get_orchestration_state("order-1"), timeout, service)
            say("  trigger route started order-1; POST /payments/ order 1")
            _http(f"{base}/payments/", {"order_id": 1, "amount": 20.0})
            say("POST /payments/ order 2 BEFORE its order; then POST /orders/ order 2 (widget x1)")
            _http(f"{base}/payments/", {"order_id": 2, "amount": 10.0})
            _http(f"{base}/orders/", {"order_id": 2, "sku": "widget", "qty": 1})
            say(f"POST /orders/ order 3 (widget x2), never paid: expires after {pay_within_s:.0f}s")
            _http(f"{base}/orders/", {"order_id": 3, "sku": "widget", "qty": 2})
            say("POST /orders/ order 4 (gadget x3): only one in stock")
            _http(f"{base}/orders/", {"order_id": 4, "sku": "gadget", "qty": 3})

            seen: dict[str, Any] = {}

            def all_folded() -> dict[str, Any] | None:
                table = _http(f"{base}/orders/")
                for key, value in table.items():
                    if key not in seen:
                        seen[key] = value
                        say(f"  faust table <- {key}: {json.dumps(value, sort_keys=True)}")
                return table if set(EXPECTED) <= set(table) else None

            table: dict[str, Any] = _wait_for("all four results in the faust table", all_folded, timeout, service)
            def widget_stock() -> int | None:  # order 3's release is a signal: it may land just after
                meta = client.get_entity(EntityInstanceId("stock", "widget"))
                return None if meta is None else meta.get_state(int)

            try:
                _wait_for("order 3's stock back", lambda: widget_stock() == 2, 30, service)
            except TimeoutError:
                pass
            left = widget_stock()
            say(f"stock left: widget x{left} (5 - 2 paid - 1 paid; order 3's 2 released)")
            table["_stock_widget"] = left
            return table
    except BaseException:
        log.flush()
        tail = (work / "service.log").read_text(errors="replace").splitlines()[-25:]
        say("the faust service's log ends with:\n    " + "\n    ".join(tail))
        raise
    finally:
        if service is not None:
            service.terminate()
            try:
                service.wait(30)
            except subprocess.TimeoutExpired:
                service.kill()
        log.close()
        if not keep:
            delete_hub(hub, bootstrap=bootstrap)
            admin.delete_topics(topics.all() + [f"{hub}-service-order-results-changelog",
                                                f"{hub}-service-__assignor-__leader"])
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"kept hub {hub} and {work}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pay-within", type=float, default=4.0, help="seconds an order waits for payment")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--keep", action="store_true", help="keep the topics and the work directory")
    args = parser.parse_args(argv)
    table = run(bootstrap_servers(), pay_within_s=args.pay_within, timeout=args.timeout, keep=args.keep)
    wrong = {k: table.get(k, {}).get("reason", table.get(k)) for k, status in EXPECTED.items()
             if (table.get(k) or {}).get("status") != status}
    if wrong or table.get("_stock_widget") != 2:
        say(f"UNEXPECTED: {wrong or table.get('_stock_widget')}")
        return 1
    say("every order ended as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
