"""Instance and entity commands of the CLI: list, show, start, raise, terminate... (issue 8).

Each command opens a :class:`Client` of ``--hub`` (bootstrap and security settings from the
environment or ``--kafka-config``), does one thing and prints a table for people or, with
``--json``, the same JSON shapes as the HTTP API, so scripts can switch between the two.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from durable_kafka._cli_worker import add_kafka_config_argument, kafka_settings
from durable_kafka._client_entities import EntityQuery
from durable_kafka._client_models import OrchestrationQuery, OrchestrationState
from durable_kafka._http_models import (
    DF_STATUS,
    entity_json,
    history_json,
    iso,
    parse_statuses,
    parse_time,
    status_json,
)
from durable_kafka.client import Client
from durable_kafka.errors import InstanceNotFoundError, InvalidArgumentError


def _client(args: argparse.Namespace) -> Client:
    bootstrap, config = kafka_settings(args)
    return Client(bootstrap, hub=args.hub, kafka_config=config)


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        raise InvalidArgumentError(f"{what} is not valid JSON: {error}") from None


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def table(rows: list[list[str]]) -> str:
    """Left-aligned columns with a rule under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _short(value: Any, width: int = 40) -> str:
    text = "-" if value is None else json.dumps(value)
    return text if len(text) <= width else text[: width - 3] + "..."


# ---------------------------------------------------------------------------- instances


def cmd_list(args: argparse.Namespace) -> int:
    query = OrchestrationQuery(created_time_from=parse_time("--created-from", args.created_from),
                               created_time_to=parse_time("--created-to", args.created_to),
                               runtime_status=parse_statuses(args.status), instance_id_prefix=args.prefix,
                               max_instance_count=args.top, fetch_inputs_and_outputs=True)
    with _client(args) as client:
        states, _token = client.query_orchestration_states(query)
    if args.json:
        _print_json([status_json(s, show_input=True) for s in states])
        return 0
    rows = [["instance id", "name", "version", "status", "created", "last updated", "output"]]
    rows += [[s.instance_id, s.name, s.version or "-", DF_STATUS[s.runtime_status], iso(s.created_at) or "-",
              iso(s.last_updated_at) or "-", _short(s.get_output())] for s in states]
    print(table(rows) if states else "no instances match")
    return 0


def _timeline(events: list[Any]) -> list[str]:
    """One line per event: seconds since the first, the event and its fields (as `make demo`)."""
    if not events:
        return []
    start = events[0].timestamp
    lines = []
    for item, event in zip(history_json(events, show_output=True), events):
        offset = (event.timestamp - start).total_seconds()
        fields = {k: v for k, v in item.items() if k not in ("EventType", "Timestamp", "EventId")
                  and v not in (None, {}, [])}
        seq = f"#{event.event_id} " if event.event_id >= 0 else ""
        detail = ", ".join(f"{k}={_short(v, 60)}" for k, v in fields.items())
        lines.append(f"  +{offset:7.3f}s  {seq}{item['EventType']}" + (f"  {detail}" if detail else ""))
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        state = client.get_orchestration_state(args.instance_id)
        if state is None:
            raise InstanceNotFoundError(f"instance {args.instance_id!r} does not exist in hub {args.hub!r}")
        events = client.get_orchestration_history(args.instance_id) if args.history else None
    if args.json:
        history = history_json(events, show_output=True) if events is not None else None
        _print_json(status_json(state, show_input=True, history=history))
        return 0
    _print_state(state)
    if events is not None:
        print("history:")
        print("\n".join(_timeline(events)))
    return 0


def _print_state(state: OrchestrationState) -> None:
    body = status_json(state, show_input=True)
    for key in ("instanceId", "name", "runtimeStatus", "createdTime", "lastUpdatedTime"):
        print(f"{key + ':':17}{body[key]}")
    if state.version is not None:
        print(f"{'version:':17}{state.version}")
    for key in ("input", "customStatus", "output"):
        print(f"{key + ':':17}{json.dumps(body[key])}")


def cmd_start(args: argparse.Namespace) -> int:
    data = _json_arg(args.input, "--input")
    with _client(args) as client:
        instance_id = client.schedule_new_orchestration(args.name, input=data, instance_id=args.id,
                                                        version=args.version)
        state = client.wait_for_orchestration_completion(instance_id, timeout=args.wait) if args.wait else None
    if args.json:
        _print_json({"id": instance_id} if state is None else status_json(state, show_input=True))
    elif state is None:
        print(instance_id)
    else:
        _print_state(state)
    return 0


def _command(action: Callable[[Client, argparse.Namespace], Any], done: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        with _client(args) as client:
            if client.get_orchestration_state(args.instance_id, fetch_payloads=False) is None:
                raise InstanceNotFoundError(f"instance {args.instance_id!r} does not exist in hub {args.hub!r}")
            result = action(client, args)
        if args.json:
            _print_json({"instanceId": args.instance_id, "result": result})
        else:
            print(f"{done}: {args.instance_id}" + (f" -> {result}" if result is not None else ""))
        return 0
    return run


_ACTIONS: dict[str, tuple[str, Callable[[Client, argparse.Namespace], Any], str]] = {
    "terminate": ("terminate an instance (the reason becomes its output)",
                  lambda c, a: c.terminate_orchestration(a.instance_id, output=a.reason), "terminate sent"),
    "suspend": ("suspend an instance", lambda c, a: c.suspend_orchestration(a.instance_id, reason=a.reason),
                "suspend sent"),
    "resume": ("resume a suspended instance",
               lambda c, a: c.resume_orchestration(a.instance_id, reason=a.reason), "resume sent"),
    "restart": ("run an ended instance again with its input",
                lambda c, a: c.restart_orchestration(a.instance_id, restart_with_new_instance_id=a.new_id),
                "restarted"),
    "rewind": ("run a failed instance's failed activities and sub-orchestrations again (docs/REWIND.md)",
               lambda c, a: c.rewind_orchestration(a.instance_id, reason=a.reason), "rewound"),
    "purge": ("delete an ended instance's state",
              lambda c, a: c.purge_orchestration(a.instance_id).deleted_instance_count, "purged"),
}


def _raise(client: Client, args: argparse.Namespace) -> None:
    client.raise_orchestration_event(args.instance_id, args.event, data=_json_arg(args.data, "--data"))


# ---------------------------------------------------------------------------- entities


def cmd_entities_list(args: argparse.Namespace) -> int:
    prefix = f"@{args.name}@" if args.name else None
    with _client(args) as client:
        entities = client.get_all_entities(EntityQuery(instance_id_starts_with=prefix, include_state=True))
    if args.json:
        _print_json([entity_json(m, fetch_state=True) for m in entities])
        return 0
    rows = [["entity", "last operation", "locked by", "queued", "state"]]
    rows += [[str(m.id), iso(m.last_modified) or "-", m.locked_by or "-", str(m.backlog_queue_size),
              _short(m.get_state())] for m in entities]
    print(table(rows) if entities else "no entities match")
    return 0


def cmd_entities_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        meta = client.get_entity(args.entity_id)
    if meta is None:
        raise InstanceNotFoundError(f"entity {args.entity_id!r} has no state in hub {args.hub!r}")
    if args.json:
        _print_json(entity_json(meta, fetch_state=True))
    else:
        print(f"entity:          {meta.id}\nlast operation:  {iso(meta.last_modified)}\n"
              f"locked by:       {meta.locked_by or '-'}\nqueued:          {meta.backlog_queue_size}\n"
              f"state:           {json.dumps(meta.get_state())}")
    return 0


def cmd_entities_signal(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.signal_entity(args.entity_id, args.operation, _json_arg(args.input, "--input"))
    print(json.dumps({"entityId": args.entity_id, "operation": args.operation}) if args.json
          else f"signalled {args.entity_id} {args.operation}")
    return 0


# ---------------------------------------------------------------------------- parsers


def _common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--hub", required=True, help="task hub name")
    parser.add_argument("--bootstrap", default=None, help="broker list (default $DURABLE_KAFKA_BOOTSTRAP)")
    parser.add_argument("--json", action="store_true", help="print JSON (the HTTP API's shapes) for scripts")
    add_kafka_config_argument(parser)
    return parser


def add_instance_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    instances = commands.add_parser("instances", help="list or show orchestration instances")
    actions = instances.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = _common(actions.add_parser("list", help="a table of instances (newest filters as the HTTP API)"))
    listing.add_argument("--status", help="comma list: Pending,Running,Completed,Failed,Terminated,Suspended")
    listing.add_argument("--prefix", help="instance id prefix")
    listing.add_argument("--created-from", help="ISO 8601 time")
    listing.add_argument("--created-to", help="ISO 8601 time")
    listing.add_argument("--top", type=int, default=100, help="at most this many (default 100)")
    listing.set_defaults(func=cmd_list)
    show = _common(actions.add_parser("show", help="an instance's status (and --history timeline)"))
    show.add_argument("instance_id")
    show.add_argument("--history", action="store_true", help="also print the history as a timeline")
    show.set_defaults(func=cmd_show)

    start = _common(commands.add_parser("start", help="start an orchestration; prints its id"))
    start.add_argument("name")
    start.add_argument("--id", default=None, help="instance id (default: a new uuid)")
    start.add_argument("--input", default=None, help="input as JSON")
    start.add_argument("--version", default=None, help="orchestration version (docs/VERSIONING.md)")
    start.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                       help="wait up to SECONDS for completion and print the final status")
    start.set_defaults(func=cmd_start)
    raise_ = _common(commands.add_parser("raise", help="send an external event to an instance"))
    raise_.add_argument("instance_id")
    raise_.add_argument("event")
    raise_.add_argument("--data", default=None, help="event data as JSON")
    raise_.set_defaults(func=_command(_raise, "event sent"))
    for name, (help_text, action, done) in _ACTIONS.items():
        parser = _common(commands.add_parser(name, help=help_text))
        parser.add_argument("instance_id")
        if name in ("terminate", "suspend", "resume", "rewind"):
            parser.add_argument("--reason", default=None)
        if name == "restart":
            parser.add_argument("--new-id", action="store_true", help="restart under a new instance id")
        parser.set_defaults(func=_command(action, done))

    entities = commands.add_parser("entities", help="list, show or signal entities")
    entity_actions = entities.add_subparsers(dest="action", required=True, metavar="ACTION")
    elist = _common(entity_actions.add_parser("list", help="a table of entities with state"))
    elist.add_argument("--name", default=None, help="only entities of this name")
    elist.set_defaults(func=cmd_entities_list)
    eshow = _common(entity_actions.add_parser("show", help="one entity (@name@key)"))
    eshow.add_argument("entity_id")
    eshow.set_defaults(func=cmd_entities_show)
    esignal = _common(entity_actions.add_parser("signal", help="signal an entity operation"))
    esignal.add_argument("entity_id", help="@name@key")
    esignal.add_argument("operation")
    esignal.add_argument("--input", default=None, help="operation input as JSON")
    esignal.set_defaults(func=cmd_entities_signal)
