"""The Durable Functions HTTP management API over one task hub, as an ASGI app.

``create_app(client)`` returns a FastAPI app serving DF's routes under
``/runtime/webhooks/durabletask`` (docs/HTTP.md lists them), built on an :class:`AsyncClient`,
so a long poll (``waitForCompletion``) holds no thread. ``python -m durable_kafka serve`` runs it
on uvicorn; a user can also mount it in their own ASGI app.

The hub is the client's: no route takes a hub name (DF's ``taskHub`` parameter, when given,
must name this hub). Errors are JSON ``{"error": reason}`` with DF's status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from durable_kafka._client_async import AsyncClient
from durable_kafka._client_entities import EntityQuery
from durable_kafka._client_models import TERMINAL_STATUSES, OrchestrationQuery, OrchestrationStatus
from durable_kafka._dashboard import add_dashboard
from durable_kafka._http_models import (
    history_json,
    entity_json,
    parse_bool,
    parse_duration,
    parse_json_body,
    parse_statuses,
    parse_time,
    parse_top,
    status_json,
)
from durable_kafka._http_security import DEFAULT_MAX_BODY_BYTES, ApiKeyMiddleware, BodyLimitMiddleware
from durable_kafka.entities import EntityInstanceId
from durable_kafka.errors import (
    BrokerError,
    ClientError,
    DurableKafkaError,
    InstanceAlreadyExistsError,
    InstanceNotFailedError,
    InstanceNotFoundError,
    PayloadTooLargeError,
    TimeoutError,
)

__all__ = ["BASE_PATH", "create_app"]

BASE_PATH = "/runtime/webhooks/durabletask"
TOKEN_HEADER = "x-ms-continuation-token"
_RETRY_AFTER = "1"
_HEALTH_TIMEOUT = 5.0


class HttpError(ClientError):
    """A request the API refuses with a specific status (404, 409, 410...) and reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _status_of(error: DurableKafkaError) -> int:
    """Typed errors -> HTTP status: the client's own checks become 4xx with their message."""
    if isinstance(error, HttpError):
        return error.status
    for error_type, status in ((InstanceNotFoundError, 404), (InstanceAlreadyExistsError, 409),
                               (InstanceNotFailedError, 410),
                               (PayloadTooLargeError, 413), (TimeoutError, 504), (BrokerError, 503),
                               (ValueError, 400), (ClientError, 400)):
        if isinstance(error, error_type):
            return status
    return 500


def create_app(client: AsyncClient, *, api_key: str | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, close_client: bool = False,
               dashboard: bool = True) -> FastAPI:
    """The management API of ``client``'s hub.

    ``api_key``: when set, every route but ``/healthz`` and the API description needs it (``?code=``
    or ``Authorization: Bearer``). ``close_client``: close the client when the app shuts down
    (what ``serve`` wants; leave False when the caller owns the client). ``dashboard``: serve the
    web dashboard at ``/`` (docs/DASHBOARD.md).
    """

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if close_client:
            await client.close()

    app = FastAPI(title=f"durable-kafka management API (hub {client.hub})", lifespan=lifespan,
                  description="Durable Functions' HTTP management API over a durable-kafka task hub.")

    async def on_error(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, DurableKafkaError)
        return JSONResponse({"error": str(error)}, status_code=_status_of(error))

    async def on_invalid(_request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": f"invalid request: {error}"}, status_code=400)

    app.add_exception_handler(DurableKafkaError, on_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    _add_instance_routes(app, client)
    _add_command_routes(app, client)
    _add_entity_routes(app, client)
    from durable_kafka._http_schedules import add_schedule_routes  # after http's helpers exist

    add_schedule_routes(app, client, BASE_PATH)
    _add_health_route(app, client)
    if dashboard:
        add_dashboard(app, client)  # the web dashboard at / (docs/DASHBOARD.md)
    app.add_middleware(BodyLimitMiddleware, limit=max_body_bytes)
    if api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)  # outermost: no key, nothing runs
    return app


# ---------------------------------------------------------------------------- helpers


def _check_hub(request: Request, client: AsyncClient) -> None:
    hub = request.query_params.get("taskHub")
    if hub is not None and hub != client.hub:
        raise HttpError(400, f"this server serves task hub {client.hub!r}, not {hub!r}")


def _prefix(request: Request) -> str:
    return str(request.base_url).rstrip("/") + BASE_PATH


def check_status_payload(request: Request, instance_id: str) -> dict[str, str]:
    """DF's check-status payload: the URIs of everything one can do to the instance.

    When the caller passed the key as ``?code=``, the URIs carry it too (as DF's do), so they
    work when followed; a caller using the Authorization header gets them without it.
    """
    base = f"{_prefix(request)}/instances/{quote(instance_id, safe='')}"
    code = request.query_params.get("code")
    key = f"code={quote(code, safe='')}" if code else ""

    def uri(path: str, query: str = "") -> str:
        parts = "&".join(p for p in (query, key) if p)
        return f"{base}{path}" + (f"?{parts}" if parts else "")

    return {
        "id": instance_id,
        "statusQueryGetUri": uri(""),
        "sendEventPostUri": uri("/raiseEvent/{eventName}"),
        "terminatePostUri": uri("/terminate", "reason={text}"),
        "suspendPostUri": uri("/suspend", "reason={text}"),
        "resumePostUri": uri("/resume", "reason={text}"),
        "rewindPostUri": uri("/rewind", "reason={text}"),
        "restartPostUri": uri("/restart"),
        "purgeHistoryDeleteUri": uri(""),
    }


def _accepted(request: Request, instance_id: str) -> JSONResponse:
    payload = check_status_payload(request, instance_id)
    return JSONResponse(payload, status_code=202,
                        headers={"Location": payload["statusQueryGetUri"], "Retry-After": _RETRY_AFTER})


async def _existing(client: AsyncClient, instance_id: str) -> Any:
    state = await client.get_orchestration_state(instance_id, fetch_payloads=False)
    if state is None:
        raise HttpError(404, f"instance {instance_id!r} does not exist in hub {client.hub!r}")
    return state


def _param(request: Request, name: str) -> str | None:
    return request.query_params.get(name)


# ---------------------------------------------------------------------------- start and read


def _add_instance_routes(app: FastAPI, client: AsyncClient) -> None:
    async def start(request: Request, name: str, instance_id: str | None = None) -> JSONResponse:
        _check_hub(request, client)
        data = parse_json_body(await request.body(), "the orchestration input")
        new_id = await client.schedule_new_orchestration(name, input=data, instance_id=instance_id)
        return _accepted(request, new_id)

    @app.post(BASE_PATH + "/orchestrators/{name}", status_code=202, summary="Start an orchestration")
    async def start_new(request: Request, name: str) -> JSONResponse:
        """Start ``name`` with the body as input (JSON); 202 with the check-status payload."""
        return await start(request, name)

    @app.post(BASE_PATH + "/orchestrators/{name}/{instance_id}", status_code=202,
              summary="Start an orchestration with a chosen instance id")
    async def start_with_id(request: Request, name: str, instance_id: str) -> JSONResponse:
        """409 when an instance with that id is pending, running or suspended."""
        return await start(request, name, instance_id)

    @app.get(BASE_PATH + "/instances/{instance_id}", summary="Get an instance's status")
    async def get_status(request: Request, instance_id: str) -> JSONResponse:
        """200 when ended, 202 while pending/running/suspended, 404 unknown; ``waitForCompletion``
        answers as soon as the instance ends (or when the wait is over)."""
        _check_hub(request, client)
        show_history = parse_bool("showHistory", _param(request, "showHistory"), False)
        show_output = parse_bool("showHistoryOutput", _param(request, "showHistoryOutput"), False)
        show_input = parse_bool("showInput", _param(request, "showInput"), True)
        fail_500 = parse_bool("returnInternalServerErrorOnFailure",
                              _param(request, "returnInternalServerErrorOnFailure"), False)
        wait = parse_duration(_param(request, "waitForCompletion"))
        state = await client.get_state_or_wait(instance_id, wait or 0.0)  # still running after it: 202
        if state is None:
            raise HttpError(404, f"instance {instance_id!r} does not exist in hub {client.hub!r}")
        history = None
        if show_history:
            history = history_json(await client.get_orchestration_history(instance_id), show_output=show_output)
        body = status_json(state, show_input=show_input, history=history)
        if state.runtime_status not in TERMINAL_STATUSES:
            location = check_status_payload(request, instance_id)["statusQueryGetUri"]
            return JSONResponse(body, status_code=202, headers={"Location": location, "Retry-After": _RETRY_AFTER})
        failed = state.runtime_status == OrchestrationStatus.FAILED
        return JSONResponse(body, status_code=500 if failed and fail_500 else 200)

    @app.get(BASE_PATH + "/instances", summary="List instances")
    async def list_instances(request: Request) -> JSONResponse:
        """Filters: runtimeStatus (comma list), createdTimeFrom/To, instanceIdPrefix, showInput,
        top (page size); the next page's token is the x-ms-continuation-token header."""
        _check_hub(request, client)
        show_input = parse_bool("showInput", _param(request, "showInput"), False)
        query = OrchestrationQuery(
            created_time_from=parse_time("createdTimeFrom", _param(request, "createdTimeFrom")),
            created_time_to=parse_time("createdTimeTo", _param(request, "createdTimeTo")),
            runtime_status=parse_statuses(_param(request, "runtimeStatus")),
            instance_id_prefix=_param(request, "instanceIdPrefix") or None,
            max_instance_count=parse_top(_param(request, "top"), 100),
            fetch_inputs_and_outputs=True,
            continuation_token=request.headers.get(TOKEN_HEADER) or None,
        )
        page, token = await client.query_orchestration_states(query)
        headers = {TOKEN_HEADER: token} if token else {}
        return JSONResponse([status_json(s, show_input=show_input) for s in page], headers=headers)


# ---------------------------------------------------------------------------- commands and purge


def _add_command_routes(app: FastAPI, client: AsyncClient) -> None:
    path = BASE_PATH + "/instances/{instance_id}"

    @app.post(path + "/raiseEvent/{event_name}", status_code=202, summary="Raise an event")
    async def raise_event(request: Request, instance_id: str, event_name: str) -> Response:
        """Body = the event data (JSON). 410 when the instance has ended."""
        _check_hub(request, client)
        data = parse_json_body(await request.body(), "the event data")
        state = await _existing(client, instance_id)
        if state.runtime_status in TERMINAL_STATUSES:
            raise HttpError(410, f"instance {instance_id!r} is {state.runtime_status.name}: it takes no events")
        await client.raise_orchestration_event(instance_id, event_name, data=data)
        return Response(status_code=202)

    @app.post(path + "/terminate", status_code=202, summary="Terminate an instance")
    async def terminate(request: Request, instance_id: str, reason: str | None = None) -> Response:
        """The reason becomes the output. 410 when the instance has already ended."""
        _check_hub(request, client)
        state = await _existing(client, instance_id)
        if state.runtime_status in TERMINAL_STATUSES:
            raise HttpError(410, f"instance {instance_id!r} already ended ({state.runtime_status.name})")
        await client.terminate_orchestration(instance_id, output=reason)
        return Response(status_code=202)

    @app.post(path + "/suspend", status_code=202, summary="Suspend an instance")
    async def suspend(request: Request, instance_id: str, reason: str | None = None) -> Response:
        """410 when the instance has ended."""
        _check_hub(request, client)
        state = await _existing(client, instance_id)
        if state.runtime_status in TERMINAL_STATUSES:
            raise HttpError(410, f"instance {instance_id!r} ended ({state.runtime_status.name}): nothing to suspend")
        await client.suspend_orchestration(instance_id, reason=reason)
        return Response(status_code=202)

    @app.post(path + "/resume", status_code=202, summary="Resume a suspended instance")
    async def resume(request: Request, instance_id: str, reason: str | None = None) -> Response:
        """410 unless the instance is suspended."""
        _check_hub(request, client)
        state = await _existing(client, instance_id)
        if state.runtime_status != OrchestrationStatus.SUSPENDED:
            raise HttpError(410, f"instance {instance_id!r} is {state.runtime_status.name}, not SUSPENDED")
        await client.resume_orchestration(instance_id, reason=reason)
        return Response(status_code=202)

    @app.post(path + "/restart", status_code=202, summary="Restart an instance with its original input")
    async def restart(request: Request, instance_id: str) -> JSONResponse:
        """Same id by default (409 while it still runs); ``restartWithNewInstanceId=true`` for a new one."""
        _check_hub(request, client)
        new_id = parse_bool("restartWithNewInstanceId", _param(request, "restartWithNewInstanceId"), False)
        restarted = await client.restart_orchestration(instance_id, restart_with_new_instance_id=new_id)
        return _accepted(request, restarted)

    @app.post(path + "/rewind", status_code=202, summary="Rewind a failed instance")
    async def rewind(request: Request, instance_id: str, reason: str | None = None) -> Response:
        """Failed activities and sub-orchestrations run again (docs/REWIND.md). 410 unless FAILED;
        202 once the owning worker has rewound it (RUNNING again)."""
        _check_hub(request, client)
        await client.rewind_orchestration(instance_id, reason=reason)
        return Response(status_code=202)

    @app.delete(path, summary="Purge an instance")
    async def purge(request: Request, instance_id: str) -> JSONResponse:
        """200 with instancesDeleted; 404 unknown; 409 while it has not ended."""
        _check_hub(request, client)
        state = await _existing(client, instance_id)
        if state.runtime_status not in TERMINAL_STATUSES:
            raise HttpError(409, f"instance {instance_id!r} is {state.runtime_status.name}; terminate it first")
        result = await client.purge_orchestration(instance_id)
        if result.deleted_instance_count == 0:
            raise HttpError(404, f"instance {instance_id!r} does not exist in hub {client.hub!r}")
        return JSONResponse({"instancesDeleted": result.deleted_instance_count})

    @app.delete(BASE_PATH + "/instances", summary="Purge instances by filter")
    async def purge_by_filter(request: Request) -> JSONResponse:
        """createdTimeFrom (required), createdTimeTo, runtimeStatus; only ended instances are
        purged. 200 with instancesDeleted, 404 when nothing matched (as DF does)."""
        _check_hub(request, client)
        created_from = parse_time("createdTimeFrom", _param(request, "createdTimeFrom"))
        if created_from is None:
            raise HttpError(400, "createdTimeFrom is required to purge by filter")
        result = await client.purge_orchestrations_by(
            created_from, parse_time("createdTimeTo", _param(request, "createdTimeTo")),
            parse_statuses(_param(request, "runtimeStatus")))
        if result.deleted_instance_count == 0:
            raise HttpError(404, "no ended instance matches the filter")
        return JSONResponse({"instancesDeleted": result.deleted_instance_count})


# ---------------------------------------------------------------------------- entities and health


def _add_entity_routes(app: FastAPI, client: AsyncClient) -> None:
    @app.post(BASE_PATH + "/entities/{name}/{key}", status_code=202, summary="Signal an entity")
    async def signal(request: Request, name: str, key: str) -> Response:
        """``op`` names the operation; the body (JSON) is its input."""
        _check_hub(request, client)
        operation = _param(request, "op")
        if not operation:
            raise HttpError(400, "query parameter op (the operation name) is required")
        data = parse_json_body(await request.body(), "the operation input")
        await client.signal_entity(EntityInstanceId(name, key), operation, data)
        return Response(status_code=202)

    @app.get(BASE_PATH + "/entities/{name}/{key}", summary="Get an entity's state")
    async def get_entity(request: Request, name: str, key: str) -> JSONResponse:
        """200 with the state as the body; 404 when the entity has no state."""
        _check_hub(request, client)
        meta = await client.get_entity(EntityInstanceId(name, key))
        if meta is None:
            raise HttpError(404, f"entity @{name}@{key} has no state in hub {client.hub!r}")
        return JSONResponse(meta.get_state())

    @app.get(BASE_PATH + "/entities/{name}", summary="List entities of one name")
    async def list_entities(request: Request, name: str) -> JSONResponse:
        """fetchState, lastOperationTimeFrom, top; paged by the x-ms-continuation-token header."""
        _check_hub(request, client)
        fetch_state = parse_bool("fetchState", _param(request, "fetchState"), False)
        query = EntityQuery(
            instance_id_starts_with=f"@{EntityInstanceId(name, '').name}@",
            last_modified_from=parse_time("lastOperationTimeFrom", _param(request, "lastOperationTimeFrom")),
            include_state=fetch_state,
            page_size=parse_top(_param(request, "top"), 100),
            continuation_token=request.headers.get(TOKEN_HEADER) or None,
        )
        page, token = await client.query_entities(query)
        headers = {TOKEN_HEADER: token} if token else {}
        return JSONResponse([entity_json(m, fetch_state=fetch_state) for m in page], headers=headers)


def _add_health_route(app: FastAPI, client: AsyncClient) -> None:
    @app.get("/healthz", summary="Readiness: broker reachable and the hub's topics present")
    async def healthz() -> JSONResponse:
        """200 when ready; 503 with the reason otherwise (for load balancer and k8s probes)."""
        try:
            async with asyncio.timeout(_HEALTH_TIMEOUT):
                missing = await client.missing_topics(_HEALTH_TIMEOUT)
        except (DurableKafkaError, asyncio.TimeoutError) as error:  # unreachable, refused, no topics
            return JSONResponse({"status": "unavailable", "hub": client.hub,
                                 "error": str(error) or "the broker did not answer"}, status_code=503)
        if missing:
            return JSONResponse({"status": "unavailable", "hub": client.hub, "missingTopics": missing},
                                status_code=503)
        return JSONResponse({"status": "ok", "hub": client.hub})
