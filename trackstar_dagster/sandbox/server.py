"""Start the sandbox from Python: ``with run_sandbox() as sb: ...`` on a free port, in a thread or a subprocess.

In-thread mode runs ``uvicorn.Server`` in a daemon thread on a socket bound before the thread starts (so
``port=0`` gives a free port with no race) and talks to the ``Sandbox`` object directly, marshalling calls
onto its event loop. Subprocess mode (``subprocess=True``, for benchmarks and the demo, where the sandbox
must not share the caller's GIL) runs ``python -m trackstar_dagster.sandbox`` and uses the admin routes; the
API key and the connections' tokens reach it through its environment, never its command line.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import socket
import subprocess as sp
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from trackstar_dagster.sandbox.app import create_app
from trackstar_dagster.sandbox.core import DEFAULT_API_KEY, DEFAULT_CONNECTIONS, Sandbox, SandboxSettings
from trackstar_dagster.sandbox.faults import FaultConfig
from trackstar_dagster.sandbox.state import ConnectionSpec

START_TIMEOUT_S = 20.0
#: environment variables the sandbox process reads its secrets from (kept off its command line)
API_KEY_ENV = "TRACKSTAR_SANDBOX_API_KEY"
CONNECTIONS_ENV = "TRACKSTAR_SANDBOX_CONNECTIONS_JSON"


class _Server(uvicorn.Server):
    """uvicorn.Server that calls ``on_started`` once it listens (the CLI writes its ready file there)."""

    on_started: Callable[[], None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.on_started is not None and not self.should_exit:
            self.on_started()


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket (``port=0``: a free port chosen by the OS)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _no_uvicorn_access_log(record: logging.LogRecord) -> bool:
    return False


def make_server(sandbox: Sandbox, *, configure_logging: bool = False, keep_heap: bool = False) -> _Server:
    """A uvicorn server for the sandbox. Access logging is ours (path only): uvicorn's would print query strings.

    ``keep_heap``: the server runs in a process of its own, whose collector it may tune (``heap.py``).

    uvicorn's httptools protocol logs access lines whenever ``uvicorn.access`` has handlers, even with
    ``access_log=False`` (pytest's log capture adds one), so its records are dropped by a filter.
    """
    access = logging.getLogger("uvicorn.access")
    if _no_uvicorn_access_log not in access.filters:
        access.addFilter(_no_uvicorn_access_log)
    config = uvicorn.Config(
        create_app(sandbox=sandbox, keep_heap=keep_heap),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
        timeout_keep_alive=30,
        backlog=4096,
    )
    server = _Server(config)
    sandbox.uvicorn_server = server
    return server


def _normalise_connections(connections: dict[str, Any] | None) -> dict[str, ConnectionSpec | str] | None:
    if connections is None:
        return None
    out: dict[str, ConnectionSpec | str] = {}
    for token, spec in connections.items():
        out[token] = ConnectionSpec(**spec) if isinstance(spec, dict) else spec
    return out


class SandboxHandle:
    """A running sandbox: its URL, key and tokens, and the knobs tests turn while it runs."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        tokens: dict[str, str],
        sandbox: Sandbox | None = None,
        process: sp.Popen[bytes] | None = None,
    ) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.tokens = tokens
        self.sandbox = sandbox  # in-thread mode only
        self.process = process  # subprocess mode only
        self._admin: httpx.Client | None = None

    def __repr__(self) -> str:
        mode = "subprocess" if self.process else "thread"
        return f"SandboxHandle({self.base_url}, {mode}, {len(self.tokens)} connections)"

    # -- plumbing ------------------------------------------------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the sandbox's event loop (its state is not thread-safe) and return its result."""
        assert self.sandbox is not None
        loop = self.sandbox.loop
        if loop is None or not loop.is_running():
            return fn(*args, **kwargs)
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                fut.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return fut.result(timeout=30)

    def _http(self) -> httpx.Client:
        if self._admin is None:
            self._admin = httpx.Client(
                base_url=self.base_url, timeout=30.0, headers={"x-trackstar-api-key": self.api_key}
            )
        return self._admin

    def _admin_call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self._http().request(method, path, **kwargs)
        resp.raise_for_status()
        return resp.json()

    # -- public API ----------------------------------------------------------------------------------
    def configure(self, **changes: Any) -> dict[str, Any]:
        """``latency``, ``jitter`` (s), ``write_rate``, ``read_rate`` (0/None = unlimited), ``catalog_limit``,
        ``faults`` (a FaultConfig replaces the faults, a dict updates some fields), ``rates`` ({kind: rate})."""
        if self.sandbox is not None:
            return self._call(self.sandbox.configure, **changes)
        body = dict(changes)
        if isinstance(body.get("faults"), FaultConfig):
            body["faults"] = body["faults"].model_dump()
        return self._admin_call("POST", "/_sandbox/configure", json=body)

    def set_write_info(self, name: str, doc: dict[str, Any]) -> None:
        """Schema drift: replace an integration's write-info document while running."""
        if self.sandbox is not None:
            self._call(self.sandbox.set_write_info, name, doc)
        else:
            self._admin_call("PUT", f"/_sandbox/write-info/{name}", json=doc)

    def records(self, resource: str = "orders", token: str | None = None) -> list[dict[str, Any]]:
        """Stored records of a resource (``orders``, ``returns``, ...), of one token's connection or all."""
        if self.sandbox is not None:
            return self._call(self.sandbox.records, resource, token)
        headers = {"x-trackstar-access-token": token} if token else {}
        return self._admin_call("GET", f"/_sandbox/records/{resource}", headers=headers)["data"]

    def arrivals(self, token: str, kind: str = "write") -> list[tuple[float, bool]]:
        """(epoch seconds, admitted) of every ``kind`` request (``write``/``read``) of one access token."""
        if self.sandbox is not None:
            return self._call(self.sandbox.arrivals, token, kind)
        data = self._admin_call(
            "GET", f"/_sandbox/arrivals/{kind}", headers={"x-trackstar-access-token": token}
        )
        return [(float(a["at"]), bool(a["admitted"])) for a in data["data"]]

    def advance_clock(self, seconds: float) -> str:
        """Move Trackstar's clock on by ``seconds`` (orders step through their statuses); its new time."""
        if self.sandbox is not None:
            return self._call(self.sandbox.advance_clock, seconds)
        return self._admin_call("POST", "/_sandbox/clock", json={"advance": seconds})["now"]

    def set_progression(self, seconds_per_step: float | None, steps: list[str] | None = None) -> None:
        """Orders step through ``steps`` every ``seconds_per_step`` of Trackstar's clock (0/None: off)."""
        if self.sandbox is not None:
            self._call(self.sandbox.set_progression, seconds_per_step, steps)
        else:
            body = {"seconds_per_step": seconds_per_step, "steps": steps}
            self._admin_call("POST", "/_sandbox/progression", json=body)

    def reset(self) -> None:
        """Forget records, idempotency keys and rate windows; restore the shipped write-info docs."""
        if self.sandbox is not None:
            self._call(self.sandbox.reset)
        else:
            self._admin_call("POST", "/_sandbox/reset")

    def close_admin(self) -> None:
        """Close the HTTP client of the admin routes (subprocess mode), if one was opened."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None


@contextlib.contextmanager
def run_sandbox(
    api_key: str = DEFAULT_API_KEY,
    connections: dict[str, ConnectionSpec | str | dict[str, Any]] | None = None,
    port: int = 0,
    latency: float = 0.0,
    jitter: float = 0.0,
    write_rate: float | None = 50.0,
    read_rate: float | None = 10.0,
    catalog_limit: bool = False,
    faults: FaultConfig | dict[str, Any] | None = None,
    state_file: str | Path | None = None,
    data_dir: str | Path | None = None,
    log_file: str | Path | None = None,
    subprocess: bool = False,
    host: str = "127.0.0.1",
    seconds_per_step: float | None = None,
) -> Iterator[SandboxHandle]:
    """Run a sandbox for the duration of the ``with`` block and yield its ``SandboxHandle``.

    ``connections``: token -> integration name or ``ConnectionSpec`` (default: the three documented
    sandbox connections). ``latency``/``jitter`` in seconds. ``log_file`` only matters in subprocess mode
    (in-thread, logs go to the caller's ``logging`` configuration). ``seconds_per_step``: orders move one
    status on (open -> ... -> fulfilled) every so many seconds of Trackstar's clock (``advance_clock``).
    """
    conns = _normalise_connections(connections)
    tokens = {
        t: (s if isinstance(s, str) else s.integration_name)
        for t, s in (conns if conns is not None else DEFAULT_CONNECTIONS).items()
    }
    settings = SandboxSettings(
        api_key=api_key,
        connections=conns,
        latency=latency,
        jitter=jitter,
        write_rate=write_rate,
        read_rate=read_rate,
        catalog_limit=catalog_limit,
        faults=faults,
        state_file=state_file,
        data_dir=data_dir,
        seconds_per_step=seconds_per_step,
    )
    if subprocess:
        with _run_subprocess(settings, host, port, log_file, tokens) as handle:
            yield handle
        return
    with _run_thread(settings, host, port, tokens) as handle:
        yield handle


@contextlib.contextmanager
def _run_thread(
    settings: SandboxSettings, host: str, port: int, tokens: dict[str, str]
) -> Iterator[SandboxHandle]:
    sandbox = Sandbox(settings)
    sock = bind_socket(host, port)
    server = make_server(sandbox)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="trackstar-sandbox"
    )
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the Trackstar sandbox did not start")
        time.sleep(0.01)
    actual_port = sock.getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host
    handle = SandboxHandle(f"http://{url_host}:{actual_port}", settings.api_key, tokens, sandbox=sandbox)
    try:
        yield handle
    finally:
        handle.close_admin()
        loop, stopping = sandbox.loop, sandbox.stopping
        if loop is not None and stopping is not None and loop.is_running():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)  # wake any "hang" fault
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        sandbox.store.close()


def cli_env(settings: SandboxSettings) -> dict[str, str]:
    """The secret half of ``settings``, for the child's environment: the API key and the connections (their
    access tokens), which on a command line anyone on the machine could read in the process list (``ps``).
    A process's environment is readable by its own user (and root) only."""
    env = {API_KEY_ENV: settings.api_key}
    if settings.connections is not None:
        specs = {
            t: (asdict(s) if isinstance(s, ConnectionSpec) else {"integration_name": s})
            for t, s in settings.connections.items()
        }
        env[CONNECTIONS_ENV] = json.dumps(specs)
    return env


def cli_args(settings: SandboxSettings, host: str, port: int, log_file: str | Path | None) -> list[str]:
    """The ``python -m trackstar_dagster.sandbox`` arguments that reproduce ``settings``, but for the API key
    and the connections: those go in the environment (``cli_env``), never on the command line."""
    args = [
        "--host",
        host,
        "--port",
        str(port),
        "--latency-ms",
        str(settings.latency * 1000),
        "--jitter-ms",
        str(settings.jitter * 1000),
        "--write-rate",
        str(settings.write_rate or 0),
        "--read-rate",
        str(settings.read_rate or 0),
    ]
    if settings.catalog_limit:
        args.append("--catalog-limit")
    if settings.faults is not None:
        f = (
            settings.faults.model_dump()
            if isinstance(settings.faults, FaultConfig)
            else dict(settings.faults)
        )
        f.pop("latency", None)
        f.pop("jitter", None)
        args += ["--faults-json", json.dumps(f)]
    if settings.state_file:
        args += ["--state", str(settings.state_file)]
    if settings.data_dir:
        args += ["--data", str(settings.data_dir)]
    if settings.seconds_per_step:
        args += ["--seconds-per-step", str(settings.seconds_per_step)]
    if log_file:
        args += ["--log-file", str(log_file)]
    else:
        args += ["--log-level", "WARNING"]  # do not flood the caller's stderr with access lines
    return args


@contextlib.contextmanager
def _run_subprocess(
    settings: SandboxSettings, host: str, port: int, log_file: str | Path | None, tokens: dict[str, str]
) -> Iterator[SandboxHandle]:
    with tempfile.TemporaryDirectory(prefix="trackstar-sandbox-") as tmp:
        ready = Path(tmp) / "ready"
        cmd = [
            sys.executable,
            "-m",
            "trackstar_dagster.sandbox",
            *cli_args(settings, host, port, log_file),
            "--ready-file",
            str(ready),
        ]
        inherited = {k: v for k, v in os.environ.items() if k not in (API_KEY_ENV, CONNECTIONS_ENV)}
        env = {**inherited, "PYTHONUNBUFFERED": "1", **cli_env(settings)}
        proc = sp.Popen(cmd, stdout=sp.DEVNULL, stdin=sp.DEVNULL, env=env)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not (ready.exists() and ready.read_text().strip()):
                if proc.poll() is not None:
                    raise RuntimeError(f"the Trackstar sandbox subprocess exited with {proc.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError("the Trackstar sandbox subprocess did not start")
                time.sleep(0.02)
            base_url = ready.read_text().strip()
            handle = SandboxHandle(base_url, settings.api_key, tokens, process=proc)
            try:
                yield handle
            finally:
                handle.close_admin()
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except sp.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
