"""The seed's example: a sequence, a durable timer and a fan-out/fan-in, on a real broker.

Run with ``make demo`` (or ``python -m examples.demo --timer-seconds 3``). It starts a worker
in this process, schedules one orchestration, prints the instance's status each time it
changes and, at the end, its history as a timeline read back from the ``<hub>.history`` topic.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta

from durable_kafka import Client, OrchestrationContext, OrchestrationStatus, Worker, task


def ActivityFunction1(ctx: task.ActivityContext, name: str) -> str:  # noqa: N802 - the seed's names
    return f"Hello {name}!"


def ActivityFunction2(ctx: task.ActivityContext, greeting: str) -> str:  # noqa: N802
    return greeting.upper()


def FanOutActivity(ctx: task.ActivityContext, n: int) -> int:  # noqa: N802
    return n * n


def demo_orchestrator(ctx: OrchestrationContext, timer_seconds: float):
    first = yield ctx.call_activity(ActivityFunction1, input="input1")
    second = yield ctx.call_activity(ActivityFunction2, input=first)
    ctx.set_custom_status({"step": "timer", "second": second})
    yield ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=timer_seconds))
    ctx.set_custom_status({"step": "fan-out"})
    results = yield task.when_all([ctx.call_activity(FanOutActivity, input=i) for i in range(5)])
    ctx.set_custom_status({"step": "done", "fan_in": sum(results)})
    return "Orchestration completed."


worker = Worker()
worker.add_orchestrator(demo_orchestrator)
worker.add_activity(ActivityFunction1)
worker.add_activity(ActivityFunction2)
worker.add_activity(FanOutActivity)


def describe(event) -> str:
    fields = {k: v for k, v in vars(event).items() if k not in ("event_id", "timestamp") and v not in (None, {}, [])}
    detail = ", ".join(f"{k}={v!r}" for k, v in fields.items())
    seq = f"#{event.event_id} " if event.event_id >= 0 else ""
    return f"{seq}{type(event).__name__}" + (f"  {detail}" if detail else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timer-seconds", type=float, default=3.0, help="length of the durable timer")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    with worker, Client() as client:
        instance_id = client.schedule_new_orchestration(demo_orchestrator, input=args.timer_seconds)
        print(f"scheduled {instance_id}")
        began, last = time.monotonic(), None
        while time.monotonic() - began < args.timeout:
            state = client.get_orchestration_state(instance_id)
            seen = state and (state.runtime_status.name, state.serialized_custom_status)
            if seen != last:
                print(f"{time.monotonic() - began:6.2f}s  {state.runtime_status.name:<10} custom_status={state.serialized_custom_status}")
                last = seen
            if state and state.runtime_status.is_terminal:
                break
            time.sleep(0.05)
        state = client.wait_for_orchestration_completion(instance_id, timeout=5)
        print(f"\noutput: {state.serialized_output}")
        if state.failure_details:
            print(f"failure: {state.failure_details}")
        print("\nhistory:")
        history = client.get_orchestration_history(instance_id)
        t0 = history[0].timestamp if history else None
        for e in history:
            print(f"  +{(e.timestamp - t0).total_seconds():7.3f}s  {describe(e)}")
        return 0 if state.runtime_status == OrchestrationStatus.COMPLETED else 1


if __name__ == "__main__":
    sys.exit(main())
