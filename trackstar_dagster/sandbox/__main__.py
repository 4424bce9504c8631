"""``trackstar-sandbox`` / ``python -m trackstar_dagster.sandbox``: a local Trackstar on one port.

Logs go to stderr (or ``--log-file``), never stdout, so a caller's stdout stays clean. Keys and tokens are
never logged.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from trackstar_dagster.sandbox.core import DEFAULT_API_KEY, DEFAULT_CONNECTIONS, Sandbox, SandboxSettings
from trackstar_dagster.sandbox.faults import FaultConfig
from trackstar_dagster.sandbox.server import API_KEY_ENV, CONNECTIONS_ENV, bind_socket, make_server
from trackstar_dagster.sandbox.state import ConnectionSpec

log = logging.getLogger("trackstar_dagster.sandbox")


def _connection(value: str) -> tuple[str, str]:
    token, sep, name = value.partition("=")
    if not sep or not token or not name:
        raise argparse.ArgumentTypeError("expected TOKEN=INTEGRATION_NAME")
    return token, name


def build_parser() -> argparse.ArgumentParser:
    """The CLI's options, with their defaults shown in ``--help``."""
    default_conns = " ".join(f"{t}={n}" for t, n in DEFAULT_CONNECTIONS.items())
    p = argparse.ArgumentParser(
        prog="trackstar-sandbox",
        description="A local Trackstar API sandbox: catalog, write-info, connections, validated writes, reads, "
        "idempotency, rate limits and fault injection.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    p.add_argument("--port", type=int, default=8787, help="port (0 = a free port)")
    p.add_argument(
        "--api-key",
        default=None,
        help=f"the API key clients must send (default: ${API_KEY_ENV}, else {DEFAULT_API_KEY}; "
        "a command line shows in `ps`: prefer the variable)",
    )
    p.add_argument(
        "--connection",
        action="append",
        type=_connection,
        metavar="TOKEN=INTEGRATION_NAME",
        help=f"a connection (repeatable; also ${CONNECTIONS_ENV}, JSON token -> integration "
        f"name); when none is given: {default_conns}",
    )
    p.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency on every data request")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="extra uniform(0, jitter) latency")
    p.add_argument(
        "--write-rate", type=float, default=50.0, help="writes per second per token (0 = unlimited)"
    )
    p.add_argument("--read-rate", type=float, default=10.0, help="reads per second per token (0 = unlimited)")
    p.add_argument(
        "--catalog-limit", action="store_true", help="enforce the catalog's 1 call/min per API key"
    )
    p.add_argument(
        "--fault-5xx", type=float, default=0.0, metavar="SHARE", help="share of writes answered 5xx"
    )
    p.add_argument("--fault-429-burst", type=int, default=0, metavar="N", help="the next N writes answer 429")
    p.add_argument("--fault-hang", type=float, default=0.0, metavar="SHARE", help="share of writes that hang")
    p.add_argument(
        "--hang-s", type=float, default=30.0, metavar="SECONDS", help="how long a hang lasts (then 504)"
    )
    p.add_argument(
        "--fault-drop",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of writes whose connection is dropped without an answer",
    )
    p.add_argument(
        "--fault-commit-then-fail",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of writes stored and then answered 502",
    )
    p.add_argument(
        "--fault-applies-to",
        choices=("writes", "reads", "all"),
        default="writes",
        help="which data requests the faults hit",
    )
    p.add_argument("--fault-seed", type=int, default=None, help="seed for deterministic faults")
    p.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="data directory (catalog-<type>.json, write-info/<name>.json); default: the shipped data",
    )
    p.add_argument(
        "--state", metavar="FILE", default=None, help="SQLite file to keep records across restarts"
    )
    p.add_argument(
        "--seconds-per-step",
        type=float,
        default=0.0,
        help="orders move one status on (open -> ... -> fulfilled) every so many seconds (0 = they stay)",
    )
    p.add_argument("--log-file", metavar="FILE", default=None, help="log here instead of stderr")
    p.add_argument("--log-level", default="INFO", help="logging level")
    # used by run_sandbox(subprocess=True)
    p.add_argument("--ready-file", default=None, help=argparse.SUPPRESS)
    p.add_argument("--faults-json", default=None, help=argparse.SUPPRESS)
    return p


def settings_from_args(args: argparse.Namespace) -> SandboxSettings:
    """SandboxSettings from the options, with the key and connections also read from the environment."""
    connections: dict[str, ConnectionSpec | str] | None = None
    from_env = os.environ.get(CONNECTIONS_ENV)
    if from_env:  # run_sandbox(subprocess=True) passes tokens here: a command line is visible in `ps`
        connections = {
            t: (s if isinstance(s, str) else ConnectionSpec(**s)) for t, s in json.loads(from_env).items()
        }
    if args.connection:
        connections = {**(connections or {}), **dict(args.connection)}
    faults = FaultConfig(
        error_5xx=args.fault_5xx,
        burst_429=args.fault_429_burst,
        hang=args.fault_hang,
        hang_s=args.hang_s,
        drop=args.fault_drop,
        commit_then_fail=args.fault_commit_then_fail,
        applies_to=args.fault_applies_to,
        seed=args.fault_seed,
    )
    if args.faults_json:
        faults = FaultConfig(**{**faults.model_dump(), **json.loads(args.faults_json)})
    return SandboxSettings(
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or DEFAULT_API_KEY,
        connections=connections,
        latency=args.latency_ms / 1000.0,
        jitter=args.jitter_ms / 1000.0,
        write_rate=args.write_rate or None,
        read_rate=args.read_rate or None,
        catalog_limit=args.catalog_limit,
        seconds_per_step=args.seconds_per_step or None,
        faults=faults,
        state_file=args.state,
        data_dir=args.data,
    )


def main(argv: list[str] | None = None) -> int:
    """Serve until stopped; 2 when the sandbox cannot start (bad data directory, port taken)."""
    args = build_parser().parse_args(argv)
    handler: logging.Handler = (
        logging.FileHandler(args.log_file) if args.log_file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(args.log_level.upper())
    settings = settings_from_args(args)
    try:
        sandbox = Sandbox(settings)
        sock = bind_socket(args.host, args.port)
    except (OSError, ValueError) as exc:
        log.error("cannot start the sandbox: %s", exc)
        return 2
    host, port = sock.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    base_url = f"http://{url_host}:{port}"
    server = make_server(sandbox, keep_heap=True)  # this process is the sandbox's alone

    def on_started() -> None:
        log.info(
            "Trackstar sandbox listening on %s (%d connections: %s; data: %s; state: %s)",
            base_url,
            len(sandbox.connections),
            ", ".join(sorted({c.integration_name for c in sandbox.connections.values()})),
            args.data or "shipped",
            args.state or "memory",
        )
        if args.ready_file:
            tmp = Path(args.ready_file + ".tmp")
            tmp.write_text(base_url)
            tmp.replace(args.ready_file)

    server.on_started = on_started
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
