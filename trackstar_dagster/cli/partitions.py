"""``trackstar-dagster partitions ...``: the connection partitions of syncs partitioned by time x connection.

- ``partitions add-connections -m MODULE [-a ATTR]``: one tick of every sync's connections sensor in the
  module's ``Definitions`` (what the daemon does each minute), its additions applied to the instance in
  ``$DAGSTER_HOME``: for deployments without a running daemon, or to see a new customer at once. Names are only
  ever added.
"""

from __future__ import annotations

import argparse
import importlib

import dagster as dg

from trackstar_dagster.cli.command import CommandError
from trackstar_dagster.cli.pools import open_instance
from trackstar_dagster.sync.partitioning import tick_connection_sensors


def add_partitions_commands(commands: argparse._SubParsersAction) -> None:
    parts = commands.add_parser(
        "partitions",
        help="connection partitions of syncs partitioned by time x connection",
        description="Connection partitions of the syncs in a code location, on the instance in $DAGSTER_HOME.",
    )
    sub = parts.add_subparsers(dest="partitions_command", required=True, metavar="{add-connections}")
    add = sub.add_parser(
        "add-connections", help="add the resources' new connections to each sync's connection partitions"
    )
    add.add_argument(
        "-m", "--module", required=True, help="module holding the Definitions (e.g. my_project.defs)"
    )
    add.add_argument(
        "-a", "--attribute", default="defs", help="its Definitions (or a function returning them)"
    )
    add.set_defaults(func=add_connections)


def load_definitions(module: str, attribute: str) -> dg.Definitions:
    """The module's ``Definitions`` (an object, or a ``@dg.definitions`` function)."""
    try:
        value = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise CommandError(f"cannot load {module}:{attribute}: {exc}") from exc
    defs = value() if callable(value) and not isinstance(value, dg.Definitions) else value
    if not isinstance(defs, dg.Definitions):
        raise CommandError(f"{module}:{attribute} is not a Definitions ({type(defs).__name__})")
    return defs


def add_connections(args: argparse.Namespace) -> int:
    defs = load_definitions(args.module, args.attribute)
    with open_instance() as instance:
        added = tick_connection_sensors(defs, instance)
    if not added:
        raise CommandError(
            f"{args.module}:{args.attribute} has no sync partitioned by a dynamic connection dimension"
        )
    for sensor, names in added.items():
        print(f"{sensor}: {'added ' + ', '.join(names) if names else 'no new connection'}")
    return 0
