"""The web dashboard: a page at ``/``, its static files, and the read routes it needs.

Why a small plain-JS front-end over JSON routes rather than server-rendered pages: the
instance table refreshes itself, the timeline is drawn from data, and every action (raise
event, suspend, terminate, purge...) is the management API's own route, so the dashboard does
nothing the API does not and goes through the same checks. No build step, no CDN: the files in
``dashboard_static/`` are served by the package.

The routes here add only what the DF API cannot answer: filtering by orchestrator name with
counts per status, an instance with its timeline and children in one call, entity names, and
the hub's topics, consumer-group lag and dead letters. They sit under ``/dashboard/api`` behind
the same API key as everything else. The page and its static files are public (like
``/openapi.json``: they hold no instance data); the page asks for the key when a call answers 401.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from durable_kafka._client_async import AsyncClient
from durable_kafka._client_models import TERMINAL_STATUSES
from durable_kafka._dashboard_hub import hub_overview, latest_dead_letters
from durable_kafka._dashboard_views import MAX_PAGE, InstanceFilter, filter_instances, instance_row, timeline
from durable_kafka._http_models import history_json, iso, parse_statuses, parse_time, status_json
from durable_kafka.errors import BrokerError, InstanceNotFoundError, InvalidArgumentError

__all__ = ["DASHBOARD_API", "STATIC_PATH", "add_dashboard"]

DASHBOARD_API = "/dashboard/api"
STATIC_PATH = "/dashboard/static"
_HUB_TIMEOUT = 30.0


def static_dir() -> Path:
    """The dashboard's files inside the installed package (a real directory in wheels and editable installs)."""
    return Path(str(resources.files("durable_kafka") / "dashboard_static"))


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise InvalidArgumentError(f"query parameter {name} must be an integer from {low} to {high}, got {value!r}")
    return int(value)


async def _statuses(client: AsyncClient) -> list[Any]:
    """Every instance's latest status, read-your-writes (what the list API answers from)."""
    await client._sync(None, client._client._sync_timeout)
    return client._client._status.snapshot()


def add_dashboard(app: FastAPI, client: AsyncClient) -> None:
    """Serve the dashboard on ``app``: ``/`` and ``/dashboard/...`` (docs/DASHBOARD.md)."""
    index = (static_dir() / "index.html").read_text(encoding="utf-8").replace("{{HUB}}", client.hub)

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(index)

    app.mount(STATIC_PATH, StaticFiles(directory=static_dir()), name="dashboard-static")
    _add_instance_views(app, client)
    _add_other_views(app, client)


def _add_instance_views(app: FastAPI, client: AsyncClient) -> None:
    @app.get(DASHBOARD_API + "/instances", summary="Dashboard: instances with counts per status")
    async def instances(request: Request) -> JSONResponse:
        """status (comma list), name (substring), prefix, from, to (ISO 8601), offset, limit."""
        q = request.query_params
        statuses = parse_statuses(q.get("status"))
        where = InstanceFilter(
            statuses=frozenset(statuses) if statuses else None, name=q.get("name") or None,
            id_prefix=q.get("prefix") or None, created_from=parse_time("from", q.get("from")),
            created_to=parse_time("to", q.get("to")))
        offset, limit = _int(request, "offset", 0, 0, 10**9), _int(request, "limit", 50, 1, MAX_PAGE)
        snapshot = await _statuses(client)
        # off the loop: filtering and sorting 100k statuses takes ~0.5 s, long polls must not wait for it
        page = await asyncio.to_thread(filter_instances, snapshot, where, offset=offset, limit=limit)
        return JSONResponse({"hub": client.hub, **page})

    @app.get(DASHBOARD_API + "/instances/{instance_id}", summary="Dashboard: one instance with its timeline")
    async def instance(instance_id: str) -> JSONResponse:
        """Status with payloads and failure, history (with results), timeline, parent and children."""
        snapshot = await _statuses(client)
        state = await client.get_orchestration_state(instance_id, fetch_payloads=True)
        if state is None:
            raise InstanceNotFoundError(f"instance {instance_id!r} does not exist in hub {client.hub!r}")
        events = await client.get_orchestration_history(instance_id)
        running = state.runtime_status not in TERMINAL_STATUSES
        own = next((s for s in snapshot if s.instance_id == instance_id), None)
        children = [instance_row(s) for s in snapshot if s.parent_instance_id == instance_id]
        return JSONResponse({
            **status_json(state, show_input=True),
            "parentInstanceId": own.parent_instance_id if own else None,
            "children": children,
            "history": history_json(events, show_output=True),
            "timeline": timeline(events, now=datetime.now(timezone.utc), running=running),
        })


def _add_other_views(app: FastAPI, client: AsyncClient) -> None:
    @app.get(DASHBOARD_API + "/entities", summary="Dashboard: entity names and entities of one name")
    async def entities(request: Request) -> JSONResponse:
        """name (optional), offset, limit; every entity name with its count, state as JSON."""
        await client._sync(None, client._client._sync_timeout)
        live = [s for s in client._client._status.entity_snapshot() if s.state is not None]
        names: dict[str, int] = {}
        for s in live:
            entity_name = _name_key(s.entity_id)[0]
            names[entity_name] = names.get(entity_name, 0) + 1
        wanted = (request.query_params.get("name") or "").lower() or None  # entity names are lower-cased
        rows = sorted((s for s in live if wanted is None or _name_key(s.entity_id)[0] == wanted),
                      key=lambda s: s.entity_id)
        offset, limit = _int(request, "offset", 0, 0, 10**9), _int(request, "limit", 50, 1, MAX_PAGE)
        items = []
        for s in rows[offset:offset + limit]:
            name, key = _name_key(s.entity_id)
            items.append({"name": name, "key": key, "lastOperationTime": iso(s.last_modified),
                          "state": _json_or_text(s.state), "lockedBy": s.lock_owner, "queued": len(s.queued)})
        return JSONResponse({"names": [{"name": n, "count": c} for n, c in sorted(names.items())],
                             "total": len(rows), "offset": offset, "limit": limit, "items": items})

    @app.get(DASHBOARD_API + "/hub", summary="Dashboard: topics, consumer-group lag and owners, dead letters")
    async def hub() -> JSONResponse:
        sync = client._client
        loop = asyncio.get_running_loop()
        try:
            overview, letters = await asyncio.wait_for(asyncio.gather(
                loop.run_in_executor(None, hub_overview, sync._bootstrap, sync._kafka_config, client.hub),
                loop.run_in_executor(None, lambda: latest_dead_letters(sync._bootstrap, sync._kafka_config,
                                                                        client.hub, sync._codec))), _HUB_TIMEOUT)
        except (KafkaException, asyncio.TimeoutError) as error:
            raise BrokerError(f"the broker did not describe hub {client.hub!r}: {error or 'timed out'}") from None
        overview["deadLetters"].update(letters)
        return JSONResponse(overview)


def _name_key(entity_id: str) -> tuple[str, str]:
    """``@name@key`` -> (name, key); the key may itself contain ``@``."""
    _, name, key = entity_id.split("@", 2)
    return name, key


def _json_or_text(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
