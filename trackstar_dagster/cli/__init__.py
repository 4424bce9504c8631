"""``trackstar-dagster``: operator commands (the Dagster instance in ``$DAGSTER_HOME``, the write ledger).

Commands come in groups (``trackstar-dagster pools ...``, ``ledger ...``, ``partitions ...``), a module each. A
group is one function that adds its parser to ``COMMAND_GROUPS``; each subcommand is one function
``(args) -> exit code`` set as the parser's ``func``; a ``CommandError`` is a message for the operator (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from trackstar_dagster.cli.command import CommandError
from trackstar_dagster.cli.ledger import add_ledger_commands
from trackstar_dagster.cli.partitions import add_partitions_commands
from trackstar_dagster.cli.pools import add_pools_commands
from trackstar_dagster.cli.suggest import add_suggest_commands
from trackstar_dagster.version import __version__

__all__ = ["COMMAND_GROUPS", "CommandError", "build_parser", "main"]

COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_pools_commands,
    add_ledger_commands,
    add_partitions_commands,
    add_suggest_commands,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trackstar-dagster",
        description="Operator commands for trackstar-dagster, on $DAGSTER_HOME's instance.",
    )
    parser.add_argument("--version", action="version", version=f"trackstar-dagster {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_group in COMMAND_GROUPS:
        add_group(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"trackstar-dagster: {exc}", file=sys.stderr)
        return 2
