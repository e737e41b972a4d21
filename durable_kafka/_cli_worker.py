"""``python -m durable_kafka worker module:attr``: run a Worker defined in user code until signalled."""

from __future__ import annotations

import argparse
import importlib
import os
import logging
import signal
import sys
import threading

from typing import TYPE_CHECKING, Any

from durable_kafka.errors import ConfigurationError
from durable_kafka.streams.config import CONFIG_FILE_ENV, bootstrap_servers, resolve_kafka_config
from durable_kafka.streams.connection import check_connection

if TYPE_CHECKING:
    from durable_kafka.worker import Worker


def add_kafka_config_argument(parser: argparse.ArgumentParser) -> None:
    """``--kafka-config FILE`` on every subcommand that connects to Kafka."""
    parser.add_argument("--kafka-config", default=None, metavar="FILE",
                        help="Kafka client properties file: security.protocol, sasl.*, ssl.* "
                             "(Java or librdkafka names; default $DURABLE_KAFKA_CONFIG_FILE)")


def kafka_settings(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """Bootstrap and resolved Kafka settings of a CLI command, checked against the broker.

    The connection check runs first so that a bad password or certificate is one clear line
    (exit 1) within seconds rather than a timeout deep inside the command.
    """
    config = resolve_kafka_config(config_file=args.kafka_config)
    bootstrap = bootstrap_servers(getattr(args, "bootstrap", None), config)
    check_connection(bootstrap, config)
    return bootstrap, config


def load_worker(spec: str) -> Worker:
    """Import ``module:attr`` and return the Worker it names (a Worker or a factory returning one)."""
    from durable_kafka.worker import Worker

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"expected module:attribute, got {spec!r}")
    sys.path.insert(0, ".")
    module = importlib.import_module(module_name)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None
    if callable(obj) and not isinstance(obj, Worker):
        obj = obj()
    if not isinstance(obj, Worker):
        raise ConfigurationError(f"{spec} is a {type(obj).__name__}, not a durable_kafka.Worker")
    return obj


def add_worker_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("worker", help="run a Worker defined in your code (module:attribute)")
    p.add_argument("target", help="module:attribute naming a durable_kafka.Worker (or a function returning one)")
    p.add_argument("--log-level", default="WARNING", help="Python log level (default WARNING: quiet)")
    p.add_argument("--triggers", default=None, metavar="FILE",
                   help="TOML file of trigger routes ([[route]] tables, docs/TRIGGERS.md), added to the worker")
    p.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="serve Prometheus metrics on http://ADDR:PORT/metrics (off by default; docs/OPERATIONS.md)")
    p.add_argument("--metrics-addr", default="0.0.0.0", metavar="ADDR", help="address of the metrics endpoint")
    add_kafka_config_argument(p)
    p.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format='{"t":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}')
    if args.kafka_config:  # the Worker is built by user code: it reads the file from the environment
        resolve_kafka_config(config_file=args.kafka_config)  # a bad file fails here, before user code
        os.environ[CONFIG_FILE_ENV] = args.kafka_config
    worker = load_worker(args.target)
    if args.triggers:  # checked whole before the worker starts: a bad file consumes nothing
        from durable_kafka._trigger_toml import load_routes

        for loaded in load_routes(args.triggers, orchestrators=worker._orchestrators.__contains__):
            worker.add_trigger(loaded.route, create_missing=loaded.create_missing)
    if args.metrics_port is not None:  # the command line wins over what the code passed
        worker.metrics_port, worker.metrics_addr = args.metrics_port, args.metrics_addr
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker.start()
    print(f"worker {worker.worker_id} running on hub {worker.hub} ({worker.bootstrap}); Ctrl-C stops it", flush=True)
    while not stop.wait(0.5):
        errors = worker.errors()
        if errors:
            print(f"worker stopped by an error: {errors[0]!r}", file=sys.stderr, flush=True)
            # no graceful stop: a thread may be blocked inside librdkafka for good. Exiting now is
            # a kill -9, which the engine is built for: the next start fences and resumes.
            os._exit(70)
    worker.stop()
    return 0


def add_audit_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("audit", help="replay a hub's history topic and check it against the status topic")
    p.add_argument("--hub", required=True)
    p.add_argument("--bootstrap", default=None)
    add_kafka_config_argument(p)
    p.add_argument("--worker", default=None,
                   help="module:attribute of a Worker whose orchestrators replay every history (determinism check)")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="also write each instance's latest history as JSON into DIR, for "
                        "durable_kafka.testing.Replayer (docs/TESTING.md)")
    p.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    from durable_kafka.connectors.audit import audit

    registry = load_worker(args.worker)._orchestrators if args.worker else None
    bootstrap, config = kafka_settings(args)
    report = audit(args.hub, bootstrap, orchestrators=registry, progress=True, kafka_config=config)
    print(f"hub {args.hub}: {report.records} history records, {report.instances} orchestration instances, "
          f"{report.entities} entities")
    for problem in report.problems:
        print(f"  PROBLEM {problem}")
    print("audit: OK" if report.ok else f"audit: {len(report.problems)} problem(s)")
    if args.export:
        _export(args.hub, bootstrap, config, args.export)
    return 0 if report.ok else 3


def _export(hub: str, bootstrap: str, config: dict[str, Any], directory: str) -> None:
    """The history topic as Replayer files (one per orchestration instance, latest execution)."""
    from durable_kafka._testing_replayer import export_histories
    from durable_kafka.connectors.audit import read_topic
    from durable_kafka.streams.codec import Codec
    from durable_kafka.streams.events import history_records
    from durable_kafka.streams.topics import HubTopics

    records = [r for _, v in read_topic(bootstrap, HubTopics(hub).history, Codec.default(), kafka_config=config)
               for r in history_records(v)]
    paths = export_histories(records, directory)
    print(f"exported {len(paths)} histories into {directory}")
