"""Replay recorded histories against today's orchestrator code (Temporal's Replayer, for Durable Task).

A CI can take histories recorded in production (``Client.get_orchestration_history``, the
history topic as ``python -m durable_kafka audit --export DIR`` writes it, or JSON files) and
check that a new build still reproduces them before it is deployed: a changed orchestrator
that would fail its running instances with a non-determinism error fails the build instead.

The replay runs the engine's own executor over the history, one event at a time, as a worker
that lost its cache would, and checks four things, stopping at the first divergence with a
:class:`~durable_kafka.errors.NonDeterminismError` that names the history event (its position,
type and sequence number), what the history has and what the code does now:

1. every scheduling event (activity, timer, sub-orchestration, event sent, entity call, signal
   or lock) matches the call the code makes at that sequence number (the executor's check);
2. at the end of every recorded episode the code made no call the history does not have;
3. the code ends where the history records the end, not earlier (the history goes on) nor later;
4. the end is the same: status, output (compared as JSON), failure type, continue-as-new input.

A history that ended FAILED with that same non-determinism (the bug already happened in
production) replays as recorded and does not raise.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from durable_kafka.errors import InvalidArgumentError, NonDeterminismError, OrchestratorNotRegisteredError
from durable_kafka.processors import history_json
from durable_kafka.processors.executor import LiveOrchestration, OrchestrationExecutor, OrchestratorRegistry
from durable_kafka.streams import events as ev
from durable_kafka.streams.events import FailureDetails, HistoryBatch, HistoryEvent, HistoryRecord, history_records
from durable_kafka.streams.status import OrchestrationStatus

_END_RECORDS = (ev.ExecutionCompleted, ev.ContinueAsNew)


@dataclass
class RecordedHistory:
    """One execution's history: what :meth:`Replayer.load` returns and :meth:`Replayer.replay` takes."""

    instance_id: str
    events: list[HistoryEvent]

    @property
    def name(self) -> str:
        started = next((e for e in self.events if isinstance(e, ev.ExecutionStarted)), None)
        return started.name if started is not None else ""


@dataclass
class ReplayResult:
    """A history replayed without divergence: where today's code stands at its end."""

    instance_id: str
    name: str
    events_replayed: int
    runtime_status: OrchestrationStatus
    output: str | None
    failure_details: FailureDetails | None


class Replayer:
    """Replays histories against the given orchestrators (functions, ``(name, fn)`` pairs, a
    ``{name: fn}`` mapping, or an ``OrchestratorRegistry``)."""

    def __init__(self, orchestrators: Iterable[Any] | Mapping[str, Callable[..., Any]] | OrchestratorRegistry = ()
                 ) -> None:
        if isinstance(orchestrators, OrchestratorRegistry):
            self.registry = orchestrators
            return
        self.registry = OrchestratorRegistry()
        items: Iterable[Any] = orchestrators.items() if isinstance(orchestrators, Mapping) else orchestrators
        for item in items:
            if isinstance(item, tuple) and len(item) == 2:
                self.registry.add_orchestrator(item[1], item[0])
            elif callable(item):
                self.registry.add_orchestrator(item)
            else:
                raise InvalidArgumentError(f"an orchestrator must be a function or a (name, function) pair, got {item!r}")

    # ------------------------------------------------------------------ files
    @staticmethod
    def load(path: str | os.PathLike[str]) -> RecordedHistory:
        """A history from a JSON file: ``{"instance_id": ..., "history": [event, ...]}`` (what
        :meth:`save` and the audit export write) or a bare list of events, each as
        :mod:`durable_kafka.processors.history_json` writes it (``{"type": "TaskScheduled", ...}``)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if isinstance(data, list):
            return RecordedHistory(Path(path).stem, [history_json.from_json(e) for e in data])
        if not isinstance(data, dict) or not isinstance(data.get("history"), list):
            raise InvalidArgumentError(f"{path}: expected a list of events or an object with a 'history' list")
        return RecordedHistory(str(data.get("instance_id") or Path(path).stem),
                               [history_json.from_json(e) for e in data["history"]])

    @staticmethod
    def save(path: str | os.PathLike[str], history: Any, *, instance_id: str | None = None) -> RecordedHistory:
        """Write a history (any form :meth:`replay` takes) as JSON that :meth:`load` reads back."""
        recorded = _recorded(history, instance_id)
        Path(path).write_text(json.dumps({
            "instance_id": recorded.instance_id, "name": recorded.name,
            "history": [history_json.to_json(e) for e in recorded.events]}, indent=1) + "\n", encoding="utf-8")
        return recorded

    # ------------------------------------------------------------------ replay
    def replay(self, history: Any, *, instance_id: str | None = None) -> ReplayResult:
        """Replay one execution's history; NonDeterminismError at the first divergence.

        ``history``: the list ``Client.get_orchestration_history`` returns, a list of
        ``HistoryRecord`` (the history topic; the latest execution of its one instance is
        replayed), a :class:`RecordedHistory`, or a path to a JSON file.
        """
        recorded = _recorded(history, instance_id)
        name = recorded.name
        if not name:
            raise InvalidArgumentError(f"the history of {recorded.instance_id!r} has no ExecutionStarted event")
        if self.registry.get(name) is None:
            raise OrchestratorNotRegisteredError(
                f"the history of {recorded.instance_id!r} is of orchestrator {name!r}, which is not among the "
                f"replayer's orchestrators ({', '.join(self.registry.names()) or 'none'})")
        live = OrchestrationExecutor(self.registry).start(recorded.instance_id)
        live.execution.is_replaying_flag = True
        events = recorded.events
        recorded_failure = _recorded_failure(events)
        as_recorded = False  # the code diverges exactly as the history's own failure says
        imposed = _imposed_by_the_engine(recorded_failure)
        for i, event in enumerate(events):
            live.process(event)
            as_recorded = as_recorded or _check_failure(live, i, event, recorded_failure)
            final = i + 1 < len(events) and isinstance(events[i + 1], _END_RECORDS)
            if isinstance(event, ev.OrchestratorCompleted) and not as_recorded and not (imposed and final):
                _check_episode_end(live, i, events)
            elif isinstance(event, _END_RECORDS) and not imposed:
                _check_end(live, i, event)
        ex = live.execution
        return ReplayResult(instance_id=recorded.instance_id, name=name, events_replayed=len(events),
                            runtime_status=live.result([]).runtime_status, output=ex.output,
                            failure_details=ex.failure)

    def replay_all(self, histories: Iterable[Any]) -> list[ReplayResult]:
        """Replay several histories (or the records of a whole history topic, grouped by instance);
        the first divergence raises."""
        items = _expanded(list(histories))
        if items and all(isinstance(x, HistoryRecord) for x in items):
            by_instance: dict[str, list[HistoryRecord]] = {}
            for rec in items:
                if not rec.instance_id.startswith("@"):  # entity operations have no orchestrator
                    by_instance.setdefault(rec.instance_id, []).append(rec)
            return [self.replay(recs) for recs in by_instance.values()]
        return [self.replay(h) for h in items]


def export_histories(records: Iterable[HistoryRecord | HistoryBatch], directory: str | os.PathLike[str]) -> list[Path]:
    """Write the latest execution of every orchestration in ``records`` (the history topic, in
    order) as one JSON file per instance that :meth:`Replayer.load` reads; returns the paths.

    What ``python -m durable_kafka audit --hub H --export DIR`` writes: a CI replays the files
    against a new build (``Replayer(orchestrators=[...]).replay(path)`` for each).
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    by_instance: dict[str, list[HistoryRecord]] = {}
    for rec in _expanded(list(records)):
        if not rec.instance_id.startswith("@"):  # entity operations have no orchestrator to replay
            by_instance.setdefault(rec.instance_id, []).append(rec)
    paths = []
    for iid, recs in sorted(by_instance.items()):
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", iid)[:80]
        if safe != iid:  # keep distinct ids in distinct files
            safe += "-" + hashlib.sha1(iid.encode()).hexdigest()[:8]
        path = out / f"{safe}.json"
        Replayer.save(path, recs)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- the checks


def _where(i: int, event: HistoryEvent) -> str:
    seq = f", sequence number {event.event_id}" if event.event_id > 0 else ""
    return f"history event #{i} ({type(event).__name__}{seq})"


def _diverged(live: LiveOrchestration, i: int, event: HistoryEvent, what: str) -> NonDeterminismError:
    return NonDeterminismError(f"replay of {live.instance_id!r} diverged at {_where(i, event)}: {what}")


def _recorded_failure(events: list[HistoryEvent]) -> FailureDetails | None:
    end = next((e for e in reversed(events) if isinstance(e, ev.ExecutionCompleted)), None)
    return end.failure_details if end is not None else None


#: Failures the engine records for an instance, not its code: input it could not apply (poison
#: records), results too large to carry, a continue_as_new loop. The code never reproduces them,
#: so the recorded end (and the episode it closes) is not compared.
_ENGINE_FAILURE_TYPES = frozenset({"PayloadTooLargeError", "ContinueAsNewLoopError", "CodecError",
                                   "UnknownSchemaError", "CorruptRecordError", "RecordEncodeError",
                                   "IncompatibleSchemaError"})


def _short_type(error_type: str) -> str:
    """``durable_kafka.errors.NonDeterminismError`` -> ``NonDeterminismError`` (qualified names
    since the failure-details change; histories recorded before it hold the bare name)."""
    return error_type.rpartition(".")[2]


def _imposed_by_the_engine(failure: FailureDetails | None) -> bool:
    return failure is not None and (_short_type(failure.error_type) in _ENGINE_FAILURE_TYPES
                                    or failure.message.startswith(("cannot apply input", "poison input")))


def _check_failure(live: LiveOrchestration, i: int, event: HistoryEvent, recorded: FailureDetails | None) -> bool:
    """Raise at a divergence found by the executor; True if it is the one the history ended with."""
    failure = live.execution.failure
    if failure is None or _short_type(failure.error_type) != "NonDeterminismError":
        return False
    if recorded is not None and recorded.error_type == failure.error_type \
            and _without_instance(recorded.message) == _without_instance(failure.message):
        return True  # the history itself ended with this divergence: it replays as recorded
    raise _diverged(live, i, event, failure.message)


def _without_instance(message: str) -> str:
    """A message with the instance id left out (a history given as bare events has none)."""
    return re.sub(r"orchestration '[^']*'", "orchestration", message).strip()


def _check_episode_end(live: LiveOrchestration, i: int, events: list[HistoryEvent]) -> None:
    ex = live.execution
    if ex.status == OrchestrationStatus.TERMINATED:
        return  # a terminate drops what the code did in its episode
    if ex.pending_actions:
        from durable_kafka.processors.executor import _describe_action

        seq = min(ex.pending_actions)
        raise _diverged(live, i, events[i], (
            f"the recorded episode ends here, but the current code also calls "
            f"{_describe_action(ex.pending_actions[seq])} at sequence number {seq}, which the history does not have"))
    nxt = events[i + 1] if i + 1 < len(events) else None
    if ex.is_done and not ex.completion_emitted and not isinstance(nxt, _END_RECORDS):
        goes_on = f"goes on with {type(nxt).__name__}" if nxt is not None else "records no end (still running)"
        raise _diverged(live, i, events[i], (
            f"the current code ends here ({ex.status.name if ex.status else '?'}), but the history {goes_on}"))


def _check_end(live: LiveOrchestration, i: int, event: HistoryEvent) -> None:
    ex = live.execution
    if ex.status is None or ex.status == OrchestrationStatus.TERMINATED:
        recorded = _describe_end(event)
        raise _diverged(live, i, event, f"the history records the end ({recorded}), but the current code "
                                        "has not ended there (it still waits on a task)")
    if isinstance(event, ev.ContinueAsNew):
        if ex.status != OrchestrationStatus.CONTINUED_AS_NEW:
            raise _diverged(live, i, event, f"the history continues as new, the current code ends {ex.status.name}")
        new_input = ex.completion_action().new_input
        if not _same_json(new_input, event.input):
            raise _diverged(live, i, event, f"the history continues as new with input {event.input}, the current "
                                            f"code with {new_input}")
        return
    assert isinstance(event, ev.ExecutionCompleted)
    status = OrchestrationStatus(event.runtime_status)
    if ex.status != status:
        raise _diverged(live, i, event, f"the history records {_describe_end(event)}, the current code ends "
                                        f"{ex.status.name}" + (f" ({ex.failure.error_type}: {ex.failure.message})"
                                                               if ex.failure is not None else ""))
    if status == OrchestrationStatus.COMPLETED and not _same_json(ex.output, event.result):
        raise _diverged(live, i, event, f"the history records the output {event.result}, the current code "
                                        f"returns {ex.output}")
    failed = event.failure_details
    if status == OrchestrationStatus.FAILED and failed is not None and ex.failure is not None \
            and failed.error_type != ex.failure.error_type:
        raise _diverged(live, i, event, f"the history records a failure of type {failed.error_type}, the "
                                        f"current code fails with {ex.failure.error_type}: {ex.failure.message}")


def _describe_end(event: HistoryEvent) -> str:
    if isinstance(event, ev.ContinueAsNew):
        return "continue_as_new"
    assert isinstance(event, ev.ExecutionCompleted)
    return OrchestrationStatus(event.runtime_status).name


def _same_json(a: str | None, b: str | None) -> bool:
    try:
        return (json.loads(a) if a is not None else None) == (json.loads(b) if b is not None else None)
    except ValueError:
        return a == b


# --------------------------------------------------------------------------- inputs


def _recorded(history: Any, instance_id: str | None) -> RecordedHistory:
    if isinstance(history, RecordedHistory):
        return history if instance_id is None else RecordedHistory(instance_id, history.events)
    if isinstance(history, (str, os.PathLike)):
        loaded = Replayer.load(history)
        return loaded if instance_id is None else RecordedHistory(instance_id, loaded.events)
    if hasattr(history, "records") and hasattr(history, "instance_id"):  # connectors.audit.FoldedInstance
        return _from_records(list(history.records), instance_id)
    items = _expanded(list(history))
    if items and all(isinstance(x, HistoryRecord) for x in items):
        return _from_records(items, instance_id)
    if all(isinstance(x, HistoryEvent) for x in items):
        return RecordedHistory(instance_id or "replay", items)
    if all(isinstance(x, dict) for x in items):
        return RecordedHistory(instance_id or "replay", [history_json.from_json(x) for x in items])
    raise InvalidArgumentError("a history is a list of history events, of HistoryRecords, a RecordedHistory or a "
                               f"JSON file path; got {type(history).__name__}")


def _expanded(items: list[Any]) -> list[Any]:
    """Values of the history topic (``HistoryBatch`` per step, ``HistoryRecord`` per event) as
    one ``HistoryRecord`` per event; any other list as it is."""
    if items and all(isinstance(x, (HistoryRecord, HistoryBatch)) for x in items):
        return [r for x in items for r in history_records(x)]
    return items


def _from_records(records: list[HistoryRecord], instance_id: str | None) -> RecordedHistory:
    ids = {r.instance_id for r in records}
    if instance_id is None and len(ids) > 1:
        raise InvalidArgumentError(f"records of {len(ids)} instances: pass instance_id=, or use replay_all")
    iid = instance_id or next(iter(ids))
    mine = [r for r in records if r.instance_id == iid]
    # the latest execution: the one whose first record (index 0) came last
    starts = [r.execution_id for r in mine if r.index == 0]
    execution = starts[-1] if starts else (mine[-1].execution_id if mine else "")
    unique = {r.id: r for r in mine if r.execution_id == execution}
    return RecordedHistory(iid, [r.event for r in sorted(unique.values(), key=lambda r: r.index)])
