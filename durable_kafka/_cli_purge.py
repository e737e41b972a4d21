"""``durable-kafka purge-by-filter``: purge every ended instance matching a filter, with progress.

The HTTP API's purge by filter (``DELETE /instances?createdTimeFrom=...``) as a command: it can
touch thousands of instances, one purge command each, so a terminal shows a bar (quiet when
piped); the last line says how many were deleted.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

from durable_kafka._cli_worker import add_kafka_config_argument, kafka_settings
from durable_kafka._client_models import OrchestrationQuery
from durable_kafka._progress import Progress
from durable_kafka.client import Client
from durable_kafka.errors import InvalidArgumentError
from durable_kafka.streams.status import TERMINAL_STATUSES, OrchestrationStatus


def _time(text: str | None, what: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgumentError(f"{what} must be an ISO 8601 time, got {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _statuses(text: str | None) -> list[OrchestrationStatus]:
    if not text:
        return list(TERMINAL_STATUSES)
    wanted = []
    for name in text.split(","):
        try:
            status = OrchestrationStatus[name.strip().upper()]
        except KeyError:
            raise InvalidArgumentError(f"unknown status {name!r}") from None
        if status not in TERMINAL_STATUSES:
            raise InvalidArgumentError(f"{name!r} has not ended: only ended instances can be purged")
        wanted.append(status)
    return wanted


def cmd_purge(args: argparse.Namespace) -> int:
    query = OrchestrationQuery(created_time_from=_time(args.created_from, "--created-from"),
                               created_time_to=_time(args.created_to, "--created-to"),
                               runtime_status=_statuses(args.status), instance_id_prefix=args.prefix,
                               max_instance_count=1000)
    bootstrap, config = kafka_settings(args)
    with Client(bootstrap, hub=args.hub, kafka_config=config) as client:
        states = client.get_all_orchestration_states(query)
        deleted = 0
        for state in Progress.over(states, "purging", len(states), "instances"):
            deleted += client.purge_orchestration(state.instance_id).deleted_instance_count
    print(f"purged {deleted} of {len(states)} matching instances")
    return 0


def add_purge_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = commands.add_parser("purge-by-filter", help="purge every ended instance matching a filter (progress on a terminal)")
    p.add_argument("--hub", required=True)
    p.add_argument("--bootstrap", default=None)
    p.add_argument("--created-from", default=None, metavar="TIME", help="ISO 8601; instances created at or after")
    p.add_argument("--created-to", default=None, metavar="TIME", help="ISO 8601; instances created before")
    p.add_argument("--status", default=None,
                   help="comma-separated ended statuses (completed,failed,terminated); default: all ended")
    p.add_argument("--prefix", default=None, help="only instance ids starting with this")
    add_kafka_config_argument(p)
    p.set_defaults(func=cmd_purge)
