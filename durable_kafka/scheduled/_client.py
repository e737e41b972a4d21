"""Managing schedules from a client: ``ScheduledTaskClient`` and the per-schedule handle
``ScheduleClient`` (durabletask's names), with asyncio twins over :class:`AsyncClient`.

Writes (create, update, pause, resume, trigger, delete) run as one short orchestration that
calls the schedule entity, as in durabletask, so each returns once the entity applied it and
raises the typed error the entity answered. Reads (describe, get, list) read the entity state
from the status topic, as ``get_entity`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durable_kafka._client_entities import EntityQuery
from durable_kafka._client_models import OrchestrationStatus
from durable_kafka.entities import EntityInstanceId
from durable_kafka.errors import TimeoutError

from ._entity import DELETE_OPERATION, ENTITY_NAME
from ._errors import ScheduleError, ScheduleInvalidTransitionError, ScheduleNotFoundError
from ._models import (
    ScheduleConfig,
    ScheduleCreationOptions,
    ScheduleDescription,
    ScheduleQuery,
    ScheduleState,
    ScheduleUpdateOptions,
    _iso,
)
from ._orchestrators import execute_schedule_operation_orchestrator

if TYPE_CHECKING:
    from durable_kafka._client_async import AsyncClient
    from durable_kafka._client_entities import EntityMetadata
    from durable_kafka._client_models import OrchestrationState
    from durable_kafka.client import Client

_HINT = ("is durable_kafka.scheduled enabled on a worker of this hub? (worker.configure_scheduled_tasks(), "
         "docs/SCHEDULES.md)")


def _update_json(o: ScheduleUpdateOptions) -> dict[str, Any]:
    return {"orchestration_name": o.orchestration_name, "orchestration_input": o.orchestration_input,
            "orchestration_instance_id": o.orchestration_instance_id, "start_at": _iso(o.start_at),
            "end_at": _iso(o.end_at), "interval_seconds": None if o.interval is None else o.interval.total_seconds(),
            "start_immediately_if_late": o.start_immediately_if_late, "cron_expression": o.cron_expression,
            "time_zone": o.time_zone, "overlap_policy": None if o.overlap_policy is None else o.overlap_policy.value,
            "max_catch_up_runs": o.max_catch_up_runs}


def _request(schedule_id: str, operation: str, input: Any = None) -> dict[str, Any]:  # noqa: A002
    return {"entity_id": str(EntityInstanceId(ENTITY_NAME, schedule_id)), "operation_name": operation,
            "input": input}


def _result(schedule_id: str, operation: str, state: OrchestrationState | None) -> Any:
    """The entity's answer to one operation, or the typed error it stands for."""
    if state is None or state.runtime_status != OrchestrationStatus.COMPLETED:
        failure = state.failure_details if state is not None else None
        message = failure.message if failure is not None else "unknown error"
        raise ScheduleError(f"Failed to '{operation}' schedule '{schedule_id}': {message}; {_HINT}")
    out = state.get_output()
    if isinstance(out, dict) and "error" in out:
        if out["error"] == "not_found":
            raise ScheduleNotFoundError(schedule_id)
        if out["error"] == "invalid_transition":
            raise ScheduleInvalidTransitionError(schedule_id, out["from_status"], out["to_status"], out["operation"])
        raise ScheduleError(f"Failed to '{operation}' schedule '{schedule_id}': {out.get('error_type')}: "
                            f"{out.get('message')}")
    return out


def _description(schedule_id: str, metadata: EntityMetadata | None) -> ScheduleDescription:
    state = ScheduleState.from_json(metadata.get_state(dict) if metadata is not None else None)
    if state.config is None:
        raise ScheduleNotFoundError(schedule_id)
    return state.to_description()


def _listed(entities: list[EntityMetadata], query: ScheduleQuery | None) -> list[ScheduleDescription]:
    out = []
    for metadata in entities:
        state = ScheduleState.from_json(metadata.get_state(dict))
        if state.config is not None and matches_filter(state, query):
            out.append(state.to_description())
    return sorted(out, key=lambda d: d.schedule_id)


def matches_filter(state: ScheduleState, query: ScheduleQuery | None) -> bool:
    """Whether a schedule's state passes ``query``'s status and creation-time bounds (exclusive)."""
    if query is None:
        return True
    if query.status is not None and state.status != query.status:
        return False
    created = state.created_at
    if query.created_from is not None and not (created is not None and created > query.created_from):
        return False
    if query.created_to is not None and not (created is not None and created < query.created_to):
        return False
    return True


def _entity_query(query: ScheduleQuery | None) -> EntityQuery:
    prefix = query.schedule_id_prefix if query is not None and query.schedule_id_prefix else ""
    return EntityQuery(instance_id_starts_with=f"@{ENTITY_NAME}@{prefix}", include_state=True)


class ScheduleClient:
    """A handle on one schedule: ``describe``, ``pause``, ``resume``, ``update``, ``delete``,
    ``trigger_now`` (every write waits up to ``operation_timeout`` seconds for the entity)."""

    def __init__(self, client: Client, schedule_id: str, *, operation_timeout: float = 60) -> None:
        if not isinstance(schedule_id, str) or not schedule_id:
            raise ScheduleError("schedule_id cannot be empty.")
        self._client = client
        self._schedule_id = schedule_id
        self._entity_id = EntityInstanceId(ENTITY_NAME, schedule_id)
        self._operation_timeout = operation_timeout

    @property
    def schedule_id(self) -> str:
        return self._schedule_id

    def _run_operation(self, operation: str, input: Any = None) -> Any:  # noqa: A002
        iid = self._client.schedule_new_orchestration(execute_schedule_operation_orchestrator,
                                                      input=_request(self._schedule_id, operation, input),
                                                      timeout=self._operation_timeout)
        try:
            state = self._client.wait_for_orchestration_completion(iid, timeout=self._operation_timeout)
        except TimeoutError as error:
            raise TimeoutError(f"'{operation}' on schedule '{self._schedule_id}' did not complete within "
                               f"{self._operation_timeout} s; {_HINT}") from error
        return _result(self._schedule_id, operation, state)

    def create(self, options: ScheduleCreationOptions) -> None:
        """Create this schedule, or replace its configuration (and make it active) if it exists."""
        self._run_operation("create_schedule", ScheduleConfig.from_options(options).to_json())

    def update(self, options: ScheduleUpdateOptions) -> None:
        """Change the fields ``options`` sets."""
        self._run_operation("update_schedule", _update_json(options))

    def pause(self) -> None:
        """Stop starting runs (ScheduleInvalidTransitionError unless active)."""
        self._run_operation("pause_schedule")

    def resume(self) -> None:
        """Start runs again from the next due time (ScheduleInvalidTransitionError unless paused)."""
        self._run_operation("resume_schedule")

    def trigger_now(self) -> str | None:
        """Start a run now, outside the due times (the overlap policy applies): its instance id,
        None if the policy skipped or buffered it."""
        out = self._run_operation("trigger_schedule")
        return out.get("instance_id") if isinstance(out, dict) else None

    def delete(self) -> None:
        """Remove the schedule; runs already started go on."""
        self._run_operation(DELETE_OPERATION)

    def describe(self) -> ScheduleDescription:
        """The schedule as of now (ScheduleNotFoundError if it does not exist)."""
        return _description(self._schedule_id, self._client.get_entity(self._entity_id, include_state=True))


class ScheduledTaskClient:
    """Creates, finds and lists the schedules of a hub, over a :class:`~durable_kafka.Client`."""

    def __init__(self, client: Client, *, operation_timeout: float = 60) -> None:
        self._client = client
        self._operation_timeout = operation_timeout

    def get_schedule_client(self, schedule_id: str) -> ScheduleClient:
        return ScheduleClient(self._client, schedule_id, operation_timeout=self._operation_timeout)

    def create_schedule(self, options: ScheduleCreationOptions) -> ScheduleClient:
        """Create the schedule ``options`` describes; a handle on it."""
        handle = self.get_schedule_client(options.schedule_id)
        handle.create(options)
        return handle

    def get_schedule(self, schedule_id: str) -> ScheduleDescription | None:
        """The schedule's description, None if it does not exist."""
        try:
            return self.get_schedule_client(schedule_id).describe()
        except ScheduleNotFoundError:
            return None

    def list_schedules(self, schedule_query: ScheduleQuery | None = None) -> list[ScheduleDescription]:
        """Every schedule matching ``schedule_query`` (all of them without one), by id."""
        return _listed(self._client.get_all_entities(_entity_query(schedule_query)), schedule_query)


class AsyncScheduleClient:
    """:class:`ScheduleClient` for asyncio code, over an :class:`~durable_kafka.AsyncClient`."""

    def __init__(self, client: AsyncClient, schedule_id: str, *, operation_timeout: float = 60) -> None:
        if not isinstance(schedule_id, str) or not schedule_id:
            raise ScheduleError("schedule_id cannot be empty.")
        self._client = client
        self._schedule_id = schedule_id
        self._entity_id = EntityInstanceId(ENTITY_NAME, schedule_id)
        self._operation_timeout = operation_timeout

    @property
    def schedule_id(self) -> str:
        return self._schedule_id

    async def _run_operation(self, operation: str, input: Any = None) -> Any:  # noqa: A002
        iid = await self._client.schedule_new_orchestration(execute_schedule_operation_orchestrator,
                                                            input=_request(self._schedule_id, operation, input),
                                                            timeout=self._operation_timeout)
        try:
            state = await self._client.wait_for_orchestration_completion(iid, timeout=self._operation_timeout)
        except TimeoutError as error:
            raise TimeoutError(f"'{operation}' on schedule '{self._schedule_id}' did not complete within "
                               f"{self._operation_timeout} s; {_HINT}") from error
        return _result(self._schedule_id, operation, state)

    async def create(self, options: ScheduleCreationOptions) -> None:
        await self._run_operation("create_schedule", ScheduleConfig.from_options(options).to_json())

    async def update(self, options: ScheduleUpdateOptions) -> None:
        await self._run_operation("update_schedule", _update_json(options))

    async def pause(self) -> None:
        await self._run_operation("pause_schedule")

    async def resume(self) -> None:
        await self._run_operation("resume_schedule")

    async def trigger_now(self) -> str | None:
        out = await self._run_operation("trigger_schedule")
        return out.get("instance_id") if isinstance(out, dict) else None

    async def delete(self) -> None:
        await self._run_operation(DELETE_OPERATION)

    async def describe(self) -> ScheduleDescription:
        return _description(self._schedule_id, await self._client.get_entity(self._entity_id, include_state=True))


class AsyncScheduledTaskClient:
    """:class:`ScheduledTaskClient` for asyncio code."""

    def __init__(self, client: AsyncClient, *, operation_timeout: float = 60) -> None:
        self._client = client
        self._operation_timeout = operation_timeout

    def get_schedule_client(self, schedule_id: str) -> AsyncScheduleClient:
        return AsyncScheduleClient(self._client, schedule_id, operation_timeout=self._operation_timeout)

    async def create_schedule(self, options: ScheduleCreationOptions) -> AsyncScheduleClient:
        handle = self.get_schedule_client(options.schedule_id)
        await handle.create(options)
        return handle

    async def get_schedule(self, schedule_id: str) -> ScheduleDescription | None:
        try:
            return await self.get_schedule_client(schedule_id).describe()
        except ScheduleNotFoundError:
            return None

    async def list_schedules(self, schedule_query: ScheduleQuery | None = None) -> list[ScheduleDescription]:
        return _listed(await self._client.get_all_entities(_entity_query(schedule_query)), schedule_query)
