"""``trackstar-dagster suggest-mapping``: a proposed mapping YAML for a source table, and its dry run.

The source is a CSV or Parquet file, or a DuckDB table (``--duckdb PATH --table T``); the write-info document
a JSON file (``--write-info``) or fetched from the API (``--base-url``, ``--integration``), the API key and the
connection's access token read from environment variables named on the command line (never a secret as an
argument: it would sit in the shell's history and the process list). The YAML goes to stdout (or
``--output``), the dry run's figures as its closing comments: it is a proposal to review, not to ship blindly.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from trackstar_dagster.base.errors import ConfigError, TrackstarError
from trackstar_dagster.base.redaction import redact, register_secret
from trackstar_dagster.cli.command import CommandError
from trackstar_dagster.client import PRODUCTION_URL, TrackstarClient
from trackstar_dagster.mapping import suggest_mapping
from trackstar_dagster.sql import quote_identifier


def add_suggest_commands(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "suggest-mapping",
        help="propose a mapping YAML for a source table and a write-info document, with a dry run",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        allow_abbrev=False,  # `--token x` must not pass for `--token-env`: a secret is never an argument
    )
    src = cmd.add_argument_group("source (a file, or --duckdb with --table)")
    src.add_argument("source", nargs="?", help="a .csv or .parquet file")
    src.add_argument("--duckdb", help="a DuckDB database file")
    src.add_argument("--table", help="the DuckDB table (or view)")
    src.add_argument("--rows", type=int, default=50_000, help="rows read, for the suggestion and the dry run")
    info = cmd.add_argument_group("write-info (a file, or fetched from --base-url)")
    info.add_argument("--write-info", help="a write-info JSON document")
    info.add_argument("--base-url", help=f"the Trackstar API to fetch it from (e.g. {PRODUCTION_URL})")
    info.add_argument("--integration", help="the integration's name (shiphero, ...), with --base-url")
    info.add_argument("--integration-type", default="wms")
    info.add_argument("--api-key-env", default="TRACKSTAR_API_KEY", help="variable holding the API key")
    info.add_argument("--token-env", help="variable holding the connection's access token (its own enums)")
    cmd.add_argument("--action", default="create_order")
    cmd.add_argument("--key", help="the record's key column(s), comma-separated (default: guessed)")
    cmd.add_argument("--connection", help="the connection the mapping writes to (default: the integration)")
    cmd.add_argument("--output", help="write the YAML to this file (the figures still print)")
    cmd.add_argument(
        "--section", action="store_true", help="nest it under `mapping:` (a component's defs.yaml)"
    )
    cmd.set_defaults(func=suggest)


def suggest(args: argparse.Namespace) -> int:
    frame = read_source(args)
    doc, integration = read_write_info(args)
    key = [k.strip() for k in args.key.split(",")] if args.key else None
    try:
        proposal = suggest_mapping(
            frame,
            doc,
            args.action,
            key=key[0] if key and len(key) == 1 else key,
            connection=args.connection,
            integration_name=integration,
        )
        figures = (
            proposal.dry_run(frame).summary() if proposal.key and proposal.fields else "dry run: not run"
        )
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    text = proposal.to_yaml(under="mapping" if args.section else None)
    text += "".join(f"# {line}\n" for line in figures.splitlines())
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}\n{figures}")
    else:
        print(text, end="")
    return 0


def read_source(args: argparse.Namespace) -> pd.DataFrame:
    """The source rows: a CSV (every cell as text, as written: ``02134`` stays a zip code), Parquet, or DuckDB."""
    limit = max(1, int(args.rows))
    if args.duckdb or args.table or str(args.source or "").lower().endswith(".parquet"):
        try:
            import duckdb  # an optional dependency: only these two sources need it
        except ImportError as exc:
            raise CommandError(
                "reading DuckDB tables and Parquet files needs duckdb: pip install duckdb"
            ) from exc
    if args.duckdb or args.table:
        if not (args.duckdb and args.table) or args.source:
            raise CommandError("give --duckdb with --table, or a file, not both")
        if not Path(args.duckdb).exists():
            raise CommandError(f"no DuckDB file {args.duckdb}")
        try:
            with duckdb.connect(args.duckdb, read_only=True) as con:
                sql = f"SELECT * FROM {quote_identifier(args.table)} LIMIT {limit}"
                return con.execute(sql).df()
        except duckdb.Error as exc:
            raise CommandError(f"cannot read table {args.table} of {args.duckdb}: {exc}") from exc
    if not args.source:
        raise CommandError("give a source: a .csv or .parquet file, or --duckdb PATH --table T")
    path = Path(args.source)
    if not path.exists():
        raise CommandError(f"no such file {path}")
    if path.suffix.lower() == ".parquet":
        try:
            with duckdb.connect() as con:
                return con.execute("SELECT * FROM read_parquet(?) LIMIT ?", [str(path), limit]).df()
        except duckdb.Error as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, nrows=limit)
    except (ValueError, OSError) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from exc


def read_write_info(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The write-info document and the integration's name, from a file or the API."""
    if args.write_info:
        path = Path(args.write_info)
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read write-info {path}: {exc}") from exc
        if not isinstance(doc, dict):
            raise CommandError(f"{path} is not a write-info document (a JSON object)")
        return doc, args.integration or path.stem
    if not (args.base_url and args.integration):
        raise CommandError("give --write-info FILE, or --base-url with --integration")
    api_key = _env(args.api_key_env)
    token = _env(args.token_env) if args.token_env else None
    try:
        with TrackstarClient(api_key, args.base_url, max_retries=2) as client:
            doc = client.get_write_info(args.integration_type, args.integration, access_token=token)
    except TrackstarError as exc:
        raise CommandError(redact(f"cannot fetch {args.integration}'s write-info: {exc}")) from exc
    return doc, args.integration


def _env(name: str) -> str:
    """A secret from the environment, registered for redaction; the variable named if unset, never its value."""
    value = os.environ.get(name, "")
    if not value:
        raise CommandError(f"environment variable {name} is not set")
    register_secret(value)
    return value
