"""Record the histories of tests/data/histories/recorded/ on the real broker.

    make broker-up
    DURABLE_KAFKA_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python tests/unit/testing/record_histories.py

Runs each orchestration of ``replay_orchestrators`` on a Worker and Client on Kafka, reads its
history back with ``Client.get_orchestration_history`` and writes it with ``Replayer.save``.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import replay_orchestrators as code  # noqa: E402

from durable_kafka import Client, Worker  # noqa: E402
from durable_kafka.testing import Replayer  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "data" / "histories" / "recorded"


def main() -> None:
    hub = f"record-{uuid.uuid4().hex[:8]}"
    worker = Worker(hub=hub, partitions=2, state_dir=tempfile.mkdtemp())
    for fn in code.ORCHESTRATORS:
        worker.add_orchestrator(fn)
    for fn in code.ACTIVITIES:
        worker.add_activity(fn)
    for fn in code.ENTITIES:
        worker.add_entity(fn)
    with worker, Client(hub=hub) as client:
        def finish(iid: str, file: str) -> None:
            client.wait_for_orchestration_completion(iid, timeout=60)
            Replayer.save(OUT / file, client.get_orchestration_history(iid), instance_id=iid)

        order = {"item": "book", "amount": 12}
        approved = client.schedule_new_orchestration(code.order_flow, input=order, instance_id="order-approved")
        client.wait_for_orchestration_start(approved)
        time.sleep(0.5)
        client.raise_orchestration_event(approved, "approved", data=True)
        finish(approved, "order_flow_approved.json")
        timed_out = client.schedule_new_orchestration(code.order_flow, input=order, instance_id="order-timeout")
        finish(timed_out, "order_flow_timed_out.json")
        counter = client.schedule_new_orchestration(code.counter, input=0, instance_id="counter")
        for n in (1, 2, None):
            time.sleep(0.5)
            client.raise_orchestration_event(counter, "add", data=n)
        finish(counter, "counter_last_execution.json")
        finish(client.schedule_new_orchestration(code.retries, input="r", instance_id="retries"), "retries.json")
        finish(client.schedule_new_orchestration(code.entity_user, input=5, instance_id="entity-user"),
               "entity_user.json")
        running = client.schedule_new_orchestration(code.waiter, instance_id="waiter")
        client.wait_for_orchestration_start(running)
        time.sleep(2)
        Replayer.save(OUT / "waiter_running.json", client.get_orchestration_history(running), instance_id=running)
        client.terminate_orchestration(running)
    print(f"recorded into {OUT}")


if __name__ == "__main__":
    main()
