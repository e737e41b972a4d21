"""``python -m durable_kafka acl grant|revoke|list``: the prefixed ACLs one hub needs, for one principal.

Run it as the admin principal (``--kafka-config admin.properties``): creating ACLs needs ALTER
on the cluster. ``--print-commands`` prints the equivalent ``kafka-acls.sh`` commands instead.
"""

from __future__ import annotations

import argparse
from enum import Enum

from durable_kafka._cli_worker import add_kafka_config_argument, kafka_settings


def add_acl_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("acl", help="grant/revoke/list the ACLs a principal needs for one hub")
    p.add_argument("action", choices=("grant", "revoke", "list"))
    p.add_argument("--hub", required=True)
    p.add_argument("--principal", default=None, help="e.g. User:svc-a (required for grant/revoke)")
    p.add_argument("--bootstrap", default=None)
    p.add_argument("--print-commands", action="store_true",
                   help="print the equivalent kafka-acls.sh commands and change nothing")
    add_kafka_config_argument(p)
    p.set_defaults(func=cmd_acl)


def cmd_acl(args: argparse.Namespace) -> int:
    from durable_kafka.connectors import acl
    from durable_kafka.errors import ConfigurationError

    if args.action != "list" and not args.principal:
        raise ConfigurationError(f"acl {args.action} needs --principal User:NAME")
    if args.print_commands:
        for line in acl.kafka_acls_commands(args.hub, args.principal or "User:NAME",
                                            args.kafka_config or "admin.properties",
                                            args.bootstrap or "BROKER:9092"):
            print(line)
        return 0
    bootstrap, config = kafka_settings(args)
    if args.action == "grant":
        bindings = acl.grant_hub(args.hub, args.principal, bootstrap=bootstrap, kafka_config=config)
        print(f"granted {len(bindings)} ACLs on prefix {args.hub}. to {args.principal}")
    elif args.action == "revoke":
        bindings = acl.revoke_hub(args.hub, args.principal, bootstrap=bootstrap, kafka_config=config)
        print(f"revoked {len(bindings)} ACLs on prefix {args.hub}. from {args.principal}")
    else:
        bindings = acl.list_hub(args.hub, args.principal, bootstrap=bootstrap, kafka_config=config)
    for b in bindings:
        print(f"  {_name(b.permission_type)} {b.principal} {_name(b.operation)} "
              f"{_name(b.restype)} {b.name} ({_name(b.resource_pattern_type)})")
    return 0


def _name(value: Enum | str | int) -> str:
    """An ACL field as kafka-acls.sh names it (confluent-kafka's AclBinding also accepts str/int)."""
    return value.name if isinstance(value, Enum) else str(value)
