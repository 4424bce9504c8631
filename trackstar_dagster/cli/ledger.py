"""``trackstar-dagster ledger ...``: look at the write ledger, and rebuild it by hand after it was lost.

A sync rebuilds a lost ledger by itself before its first write to a connection the ledger knows nothing of;
this is the same, ahead of time or for a connection the next run will not touch. Secrets come from
environment variables named on the command line, never from the command line itself (``ps`` shows it).
"""

from __future__ import annotations

import argparse
import os

from sqlalchemy.engine import make_url

from trackstar_dagster.cli.command import CommandError
from trackstar_dagster.client import PRODUCTION_URL, TrackstarClient
from trackstar_dagster.writer import Ledger, default_ledger_url, rebuild_ledger


def add_ledger_commands(commands: argparse._SubParsersAction) -> None:
    ledger = commands.add_parser(
        "ledger",
        help="the write ledger: show it, rebuild it from Trackstar",
        description="The write ledger ($TRACKSTAR_DAGSTER_LEDGER_URL, else "
        "$DAGSTER_HOME/trackstar/ledger.sqlite).",
    )
    sub = ledger.add_subparsers(dest="ledger_command", required=True, metavar="{show,rebuild}")

    show = sub.add_parser("show", help="rows per connection, action and status; live claims and their runs")
    show.add_argument("--sync", help="only this sync (its name is the ledger's namespace)")
    _ledger_options(show)
    show.set_defaults(func=ledger_show)

    rebuild = sub.add_parser(
        "rebuild", help="learn from Trackstar which records of a sync a connection holds"
    )
    rebuild.add_argument("--sync", required=True, help="the sync's name (the namespace in its records' tags)")
    rebuild.add_argument("--connection", required=True, help="the connection's name in the sync")
    rebuild.add_argument("--token-env", required=True, help="environment variable holding its access token")
    rebuild.add_argument("--api-key-env", default="TRACKSTAR_API_KEY", help="default: TRACKSTAR_API_KEY")
    rebuild.add_argument("--base-url", default=None, help="default: $TRACKSTAR_BASE_URL, else production")
    rebuild.add_argument("--action", default="create_order")
    rebuild.add_argument(
        "--since",
        default=None,
        help="only records Trackstar created since (ISO date-time): a shorter listing",
    )
    _ledger_options(rebuild)
    rebuild.set_defaults(func=ledger_rebuild)


def _ledger_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ledger-url", help="a URL without a password (default: the ledger the syncs use)")
    parser.add_argument(
        "--ledger-url-env", help="environment variable holding the ledger URL (with a password)"
    )


def _ledger_url(args: argparse.Namespace) -> str:
    if args.ledger_url_env:
        return _env(args.ledger_url_env)
    if args.ledger_url:
        if "://" in args.ledger_url and make_url(args.ledger_url).password:
            raise CommandError(
                "a password on the command line is visible to every user (ps); put the URL in "
                "an environment variable and pass --ledger-url-env"
            )
        return args.ledger_url
    return default_ledger_url()


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise CommandError(f"environment variable {name} is not set")
    return value


def ledger_show(args: argparse.Namespace) -> int:
    with Ledger(_ledger_url(args)) as ledger:
        print(f"ledger: {ledger!r}")
        rows = ledger.entries(namespace=args.sync)
        if not len(rows):
            print("no rows")
        else:
            counts = rows.groupby(["namespace", "connection", "action", "status"]).size().rename("rows")
            print(counts.reset_index().to_string(index=False))
        claims = ledger.claims(args.sync)
        if len(claims):
            live = claims.groupby(["namespace", "connection", "claim_run"])["seconds_left"].agg(
                ["size", "max"]
            )
            print("\nclaims (seconds_left < 0: expired, taken over by the next run):")
            print(
                live.rename(columns={"size": "keys", "max": "seconds_left"})
                .reset_index()
                .to_string(index=False)
            )
    return 0


def ledger_rebuild(args: argparse.Namespace) -> int:
    base_url = args.base_url or os.environ.get("TRACKSTAR_BASE_URL") or PRODUCTION_URL
    client = TrackstarClient(_env(args.api_key_env), base_url)
    try:
        with Ledger(_ledger_url(args)) as ledger:
            n = rebuild_ledger(
                client,
                ledger,
                namespace=args.sync,
                connection=args.connection,
                token=_env(args.token_env),
                action=args.action,
                since=args.since,
            )
    finally:
        client.close()
    print(
        f"{n} records of sync {args.sync!r} found in Trackstar for {args.connection!r} and written to the "
        f"ledger (rows that already knew their Trackstar id were left alone)"
    )
    return 0
