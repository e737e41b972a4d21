"""Command line: ``python -m durable_kafka <command> ...`` (also installed as ``durable-kafka``).

Commands:
    topics create   --hub NAME [--partitions N] [--bootstrap ADDR] [--kafka-config FILE]
                    [--replication-factor N] [--min-insync-replicas N]
    topics describe --hub NAME [--partitions N] [--bootstrap ADDR] [--kafka-config FILE]
    worker MODULE:ATTR [--kafka-config FILE]
    audit --hub NAME [--worker MODULE:ATTR] [--export DIR] [--bootstrap ADDR] [--kafka-config FILE]
    acl grant|revoke|list --hub NAME --principal User:NAME [--bootstrap ADDR] [--kafka-config FILE]
    serve --hub NAME [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--max-body-bytes N]
    instances list|show, start, raise, terminate|suspend|resume|restart|purge, entities list|show|signal
                    --hub NAME [--json] (tables for people, JSON in the HTTP API's shapes for scripts)

``--kafka-config`` names a Kafka client properties file (``key=value``, Java or librdkafka
names: docs/SECURITY.md); it takes the place of ``$DURABLE_KAFKA_CONFIG_FILE``.

Each subcommand is one ``cmd_*`` function registered by an ``_add_*`` function, so new commands
plug in without touching the others. Exit codes: 0 ok, 1 broker/engine error, 2 bad settings
(invalid hub name, partition mismatch, bad arguments), 3 ``topics describe`` found problems.
Errors print one line to stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from durable_kafka.errors import ConfigurationError, DurableKafkaError
from durable_kafka._cli_acl import add_acl_command
from durable_kafka._cli_instances import add_instance_commands
from durable_kafka._cli_purge import add_purge_command
from durable_kafka._cli_serve import add_serve_command
from durable_kafka._cli_worker import add_audit_command, add_kafka_config_argument, add_worker_command, kafka_settings

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIGURATION = 2
EXIT_PROBLEMS = 3


def _add_hub_arguments(parser: argparse.ArgumentParser, many: bool = False) -> None:
    if many:
        parser.add_argument("--hub", required=True, action="append",
                            help="task hub name (prefix of its topics); repeat it for several hubs")
    else:
        parser.add_argument("--hub", required=True, help="task hub name (prefix of its topics)")
    parser.add_argument(
        "--partitions", type=int, default=12, help="hub-wide partition count (default 12)"
    )
    parser.add_argument(
        "--bootstrap",
        default=None,
        help="broker list (default $DURABLE_KAFKA_BOOTSTRAP, else 127.0.0.1:9092)",
    )
    add_kafka_config_argument(parser)


def cmd_topics_create(args: argparse.Namespace) -> int:
    """Create each hub's missing topics and say which were created (a progress bar on a terminal)."""
    from durable_kafka._progress import Progress
    from durable_kafka.streams.admin import ensure_topics

    bootstrap, config = kafka_settings(args)
    hubs = args.hub if isinstance(args.hub, list) else [args.hub]
    with Progress("creating topics", len(hubs), "hubs", enabled=len(hubs) > 1) as bar:
        for hub in hubs:
            created = ensure_topics(hub, partitions=args.partitions, bootstrap=bootstrap, kafka_config=config,
                                    replication_factor=args.replication_factor,
                                    min_insync_replicas=args.min_insync_replicas)
            bar.write(f"created {len(created)} topics for hub {hub!r}:" if created
                      else f"all topics of hub {hub!r} already exist")
            for name in created:
                bar.write(f"  {name}")
            bar.update()
    return EXIT_OK


def _retention_text(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 0:
        return "unlimited"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def cmd_topics_describe(args: argparse.Namespace) -> int:
    """Print the hub's catalog next to what the broker has; exit 3 if anything differs."""
    from durable_kafka.streams.admin import describe_topics

    bootstrap, config = kafka_settings(args)
    reports = describe_topics(args.hub, partitions=args.partitions, bootstrap=bootstrap, kafka_config=config)
    rows = [["topic", "key", "value schema(s)", "partitions exp/act", "rf", "min isr", "cleanup", "retention",
             "status"]]
    for report in reports:
        spec = report.topic.spec
        actual = "-" if report.partitions is None else str(report.partitions)
        cleanup = report.cleanup_policy or spec.cleanup_policy
        # retention does not apply to compact-only topics, whatever the broker default says
        retention = None if spec.retention_ms is None else report.retention_ms if report.exists else spec.retention_ms
        rows.append(
            [
                report.name,
                spec.key,
                ", ".join(t.__name__ for t in spec.value_types),
                f"{report.topic.partitions}/{actual}",
                "-" if report.replication_factor is None else str(report.replication_factor),
                "-" if report.min_insync_replicas is None else str(report.min_insync_replicas),
                cleanup,
                _retention_text(retention),
                "ok" if report.ok else "; ".join(report.problems),
            ]
        )
    print(_table(rows))
    return EXIT_OK if all(report.ok for report in reports) else EXIT_PROBLEMS


def _add_topics_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    topics = commands.add_parser("topics", help="create or inspect a task hub's topics")
    actions = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create the hub's missing topics (idempotent)")
    _add_hub_arguments(create, many=True)
    create.add_argument("--replication-factor", type=int, default=None,
                        help="copies of each partition (default: 3 on three or more brokers, else one per broker)")
    create.add_argument("--min-insync-replicas", type=int, default=None,
                        help="copies that must acknowledge a write (default: 2 when the factor is 3+, else 1)")
    create.set_defaults(func=cmd_topics_create)
    describe = actions.add_parser("describe", help="compare the hub's catalog with the broker")
    _add_hub_arguments(describe)
    describe.set_defaults(func=cmd_topics_describe)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser; each command group adds itself here."""
    parser = argparse.ArgumentParser(
        prog="durable-kafka", description="Durable Functions for Python where Kafka is the database."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_topics_commands(commands)
    add_worker_command(commands)
    add_audit_command(commands)
    add_acl_command(commands)
    add_serve_command(commands)
    add_instance_commands(commands)
    add_purge_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (errors become one line on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)  # each command's handler returns its exit code
        return code
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIGURATION
    except DurableKafkaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
