"""The orchestrator context's edges with a payload store bound: references out, real values in."""

from __future__ import annotations

import json
from typing import Any

from durable_kafka import LargePayloadStorageOptions, PayloadStore, task
from durable_kafka.processors.actions import CompleteOrchestration, ScheduleTask
from durable_kafka.processors.executor import OrchestrationExecutor
from durable_kafka.streams import events as ev
from durable_kafka.streams.payloads import PayloadCodec, bind
from executor_harness import T0, os_, registry_of


class DictStore(PayloadStore):
    def __init__(self) -> None:
        self._options = LargePayloadStorageOptions(threshold_bytes=100, enable_compression=False)
        self.blobs: dict[str, bytes] = {}

    @property
    def options(self) -> LargePayloadStorageOptions:
        return self._options

    def upload(self, data: bytes, *, instance_id: str | None = None) -> str:
        token = f"dict:v1:{instance_id}:{len(self.blobs)}"
        self.blobs[token] = data
        return token

    async def upload_async(self, data: bytes, *, instance_id: str | None = None) -> str:
        return self.upload(data, instance_id=instance_id)

    def download(self, token: str) -> bytes:
        return self.blobs[token]

    async def download_async(self, token: str) -> bytes:
        return self.download(token)

    def is_known_token(self, value: str) -> bool:
        return value.startswith("dict:v1:")


def relay(ctx: task.OrchestrationContext, data: Any) -> Any:
    result = yield ctx.call_activity("work", input=data)
    child = yield ctx.call_sub_orchestrator("sub", input=result, instance_id="kid")
    return child


def _start(token: str) -> ev.ExecutionStarted:
    return ev.ExecutionStarted(-1, T0, name="relay", execution_id="e", input=token)


def test_actions_carry_references_owned_by_their_receiver_and_the_code_sees_values() -> None:
    store = DictStore()
    codec = PayloadCodec(store)
    data = "d" * 1000
    executor = OrchestrationExecutor(registry_of(relay))
    with bind(codec, "inst-1"):
        token_in = codec.externalize(json.dumps(data), "inst-1")
        [schedule] = executor.execute("inst-1", [], [os_(), _start(token_in)]).actions
        assert isinstance(schedule, ScheduleTask) and store.is_known_token(schedule.input or "")
        assert json.loads(store.blobs[schedule.input or ""]) == data  # the activity's real input
        result = codec.externalize(json.dumps(data.upper()), "inst-1")  # as the activity worker stores it
        past = [os_(), _start(token_in), ev.TaskScheduled(1, T0, name="work", input=schedule.input)]
        uploads = len(store.blobs)
        [sub] = executor.execute("inst-1", past, [os_(), ev.TaskCompleted(-1, T0, task_scheduled_id=1,
                                                                           result=result)]).actions
        assert len(store.blobs) == uploads + 1  # the replayed activity input was not stored again
        assert sub.input is not None and sub.input.startswith("dict:v1:kid:")  # the child owns its input
        done = executor.execute("inst-1", [*past, ev.TaskCompleted(-1, T0, task_scheduled_id=1, result=result),
                                           ev.SubOrchestrationInstanceCreated(2, T0, name="sub", instance_id="kid",
                                                                              input=sub.input)],
                                [os_(), ev.SubOrchestrationInstanceCompleted(-1, T0, task_scheduled_id=2,
                                                                             result=result)]).actions
        [complete] = done
        assert isinstance(complete, CompleteOrchestration)
        assert json.loads(store.blobs[complete.result or ""]) == data.upper()


def test_nothing_bound_means_plain_json() -> None:
    executor = OrchestrationExecutor(registry_of(relay))
    [schedule] = executor.execute("inst-1", [], [os_(), _start(json.dumps("x" * 1000))]).actions
    assert schedule.input == json.dumps("x" * 1000)
