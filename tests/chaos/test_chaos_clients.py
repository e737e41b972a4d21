"""Scenarios 7 and 8: what clients can do to a hub: oversized payloads, racing starts of one id.

In-process worker (so ``Worker.errors()`` can be asked) on the shared broker.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from chaos_harness import SUMMARIES, judge, sized, wait_all_done
from durable_kafka import Client, OrchestrationStatus, Worker
from durable_kafka.entities import EntityContext
from durable_kafka.errors import InstanceAlreadyExistsError, PayloadTooLargeError

pytestmark = pytest.mark.timeout(300)


def make_big(ctx, n):
    return "b" * n


def bloat(ctx, spec):
    """Returns ``spec['out']`` bytes of output, possibly after an activity that returns as many."""
    if spec.get("via_activity"):
        return (yield ctx.call_activity(make_big, input=spec["out"]))
    return "o" * spec["out"]


def echo(ctx, x):
    return x


def gated(ctx, _):
    return (yield ctx.wait_for_external_event("go"))


def keep(ctx: EntityContext, value):
    if ctx.operation == "set":
        ctx.set_state(value)


def _worker(hub, tmp_path) -> Worker:
    # large payloads off: this scenario is about what a Kafka record cannot carry (docs/PAYLOADS.md)
    w = Worker(hub.bootstrap, hub=hub.name, state_dir=str(tmp_path / "state"), partitions=hub.partitions,
               payload_store=False)
    for o in (bloat, echo, gated):
        w.add_orchestrator(o)
    w.add_activity(make_big)
    w.add_entity(keep)
    return w


@pytest.mark.hub_partitions(2)
def test_oversized_payloads_are_refused_at_once_or_fail_the_one_instance(hub, tmp_path):
    refusals: list[tuple[str, float]] = []
    with _worker(hub, tmp_path) as worker, Client(hub.bootstrap, hub=hub.name, payload_store=False) as client:
        for what, call in [
            ("start input 2 MB", lambda: client.schedule_new_orchestration(echo, input="z" * 2_000_000)),
            ("event 1.5 MB", lambda: client.raise_orchestration_event("any", "e", data="z" * 1_500_000)),
            ("signal 1.5 MB", lambda: client.signal_entity("@keep@k", "set", "z" * 1_500_000)),
            ("start input 1 MB of 4-byte chars", lambda: client.schedule_new_orchestration(echo, input="\U0001F600" * 250_000)),
        ]:
            began = time.monotonic()
            with pytest.raises(PayloadTooLargeError, match="limit"):
                call()
            refusals.append((what, time.monotonic() - began))
        cases = {  # instance -> why its output cannot be carried
            client.schedule_new_orchestration(bloat, input={"out": 1_100_000}): "output over a record",
            client.schedule_new_orchestration(echo, input="i" * 600_000): "input + output over a record",
            client.schedule_new_orchestration(bloat, input={"out": 1_100_000, "via_activity": True}): "activity result",
        }
        ok = [client.schedule_new_orchestration(echo, input=f"fine-{i}") for i in range(sized(20, 5))]
        failed_types, messages = {}, {}
        for iid, why in cases.items():
            state = client.wait_for_orchestration_completion(iid, timeout=60)
            assert state.runtime_status == OrchestrationStatus.FAILED, (why, state)
            failed_types[why] = state.failure_details.error_type
            messages[why] = state.failure_details.message
        assert failed_types["output over a record"] == "durable_kafka.errors.PayloadTooLargeError"
        assert failed_types["input + output over a record"] == "durable_kafka.errors.PayloadTooLargeError"
        # an activity's too-large result reaches the orchestration as that task's failure
        assert failed_types["activity result"] == "durable_kafka.errors.TaskFailedError", failed_types
        assert "too large" in messages["activity result"], messages["activity result"]
        for i, iid in enumerate(ok):
            assert client.wait_for_orchestration_completion(iid, timeout=60).get_output() == f"fine-{i}"
        assert worker.errors() == []
    slowest = max(s for _, s in refusals)
    line = (f"[chaos] oversized payloads: {len(refusals)} client calls refused with PayloadTooLargeError "
            f"(slowest {slowest * 1000:.1f} ms); {len(cases)} instances FAILED "
            f"({', '.join(f'{k}: {v}' for k, v in failed_types.items())}); {len(ok)} normal instances completed; "
            "worker errors 0")
    print(line)
    SUMMARIES.append(line)


@pytest.mark.hub_partitions(2)
def test_racing_starts_of_one_id_run_exactly_one_instance(hub, tmp_path):
    threads, rounds = sized(16, 6), sized(20, 4)
    outcomes: Counter = Counter()
    expected = {f"race-{r}": f"go-{r}" for r in range(rounds)}
    with _worker(hub, tmp_path) as worker:
        clients = [Client(hub.bootstrap, hub=hub.name) for _ in range(threads)]
        try:
            for r, iid in enumerate(expected):
                barrier = threading.Barrier(threads)
                results: list[str] = []
                lock = threading.Lock()

                def start(c: Client, i: int, iid: str = iid, barrier: threading.Barrier = barrier,
                          results: list[str] = results, lock: threading.Lock = lock) -> None:
                    barrier.wait(30)
                    try:
                        # a quarter of the racers only queue their start: deduplicated, unanswered
                        c.schedule_new_orchestration(gated, instance_id=iid, wait_for_acceptance=i % 4 != 3,
                                                     timeout=60)
                        outcome = "accepted" if i % 4 != 3 else "queued"
                    except InstanceAlreadyExistsError:
                        outcome = "already exists"
                    except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                        outcome = f"error {type(exc).__name__}: {exc}"
                    with lock:
                        results.append(outcome)

                ts = [threading.Thread(target=start, args=(c, i)) for i, c in enumerate(clients)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join(90)
                counts = Counter(results)
                outcomes.update(counts)
                waited = threads - sum(1 for i in range(threads) if i % 4 == 3)
                assert len(results) == threads, results
                assert counts["accepted"] <= 1 and counts["accepted"] + counts["already exists"] == waited, counts
                clients[0].raise_orchestration_event(iid, "go", data=f"go-{r}")
            left = wait_all_done(clients[0], expected, timeout=120)
            time.sleep(1.0)  # a late duplicate start would show up in the history now
        finally:
            for c in clients:
                c.close()
        assert worker.errors() == []
    verdict = judge("racing starts of one id", hub.bootstrap, hub.topics.history, expected)
    verdict.extra.update(racers=threads, **{k.replace(" ", "_"): v for k, v in outcomes.items()}, not_terminal=len(left))
    verdict.report()
    verdict.assert_clean()
