"""``python -m durable_kafka serve --hub NAME``: the HTTP management API of one hub on uvicorn.

Refuses to listen beyond loopback without an API key: the API can start, stop and purge every
instance of the hub, so an open port on a network must not mean open access.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from durable_kafka._cli_worker import add_kafka_config_argument, kafka_settings
from durable_kafka._http_security import DEFAULT_MAX_BODY_BYTES
from durable_kafka.errors import ConfigurationError

API_KEY_ENV = "DURABLE_KAFKA_API_KEY"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so it needs a key


def check_bind(host: str, api_key: str | None) -> None:
    if not api_key and not is_loopback(host):
        raise ConfigurationError(
            f"refusing to serve on {host} without an API key: pass --api-key or set ${API_KEY_ENV} "
            "(or bind to 127.0.0.1)")


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until interrupted; exit 2 on a refused configuration."""
    import uvicorn

    from durable_kafka._client_async import AsyncClient
    from durable_kafka.http import create_app

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    check_bind(args.host, api_key)
    if args.max_body_bytes < 1:
        raise ConfigurationError(f"--max-body-bytes must be positive, got {args.max_body_bytes}")
    bootstrap, config = kafka_settings(args)
    client = AsyncClient(bootstrap, hub=args.hub, kafka_config=config)
    app = create_app(client, api_key=api_key, max_body_bytes=args.max_body_bytes, close_client=True)
    print(f"serving hub {args.hub!r} on http://{args.host}:{args.port} "
          f"({'API key required' if api_key else 'no API key: loopback only'})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log)
    return 0


def add_serve_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("serve", help="serve the Durable Functions HTTP management API of a hub")
    p.add_argument("--hub", required=True, help="the task hub (fixed for the server's lifetime)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--api-key", default=None,
                   help=f"required key (?code= or Authorization: Bearer); default ${API_KEY_ENV}")
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                   help=f"largest request body accepted, else 413 (default {DEFAULT_MAX_BODY_BYTES})")
    p.add_argument("--bootstrap", default=None, help="broker list (default $DURABLE_KAFKA_BOOTSTRAP)")
    p.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    add_kafka_config_argument(p)
    p.set_defaults(func=cmd_serve)
