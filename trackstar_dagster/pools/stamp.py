"""The heartbeat stamp on a run: its two run tags, who wrote them (host, pid namespace, pid, orchestrator pid),
and whether that local process still lives.

Writing (``beat``) and reading (``heartbeat_of``) the stamp only; the thread that keeps beating is in
``pools.heartbeat``, the judgement drawn from a stamp in ``pools.holders``.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

HEARTBEAT_TAG = "trackstar/heartbeat"
HEARTBEAT_BY_TAG = "trackstar/heartbeat_by"


@dataclass(frozen=True)
class Beater:
    host: str
    pid_ns: str
    pid: int
    orchestrator_pid: int

    def encode(self) -> str:
        return f"{self.host}|{self.pid_ns}|{self.pid}|{self.orchestrator_pid}"

    @classmethod
    def decode(cls, text: str | None) -> Beater | None:
        try:
            host, pid_ns, pid, orchestrator = (text or "").split("|")
            return cls(host, pid_ns, int(pid), int(orchestrator))
        except ValueError:
            return None

    def is_local(self) -> bool:
        me = this_process()
        return self.host == me.host and self.pid_ns == me.pid_ns

    def __str__(self) -> str:
        orchestrator = (
            f", orchestrator pid {self.orchestrator_pid}" if self.orchestrator_pid != self.pid else ""
        )
        return f"pid {self.pid}{orchestrator} on {self.host}"


def this_process() -> Beater:
    """This process, and the one that runs its steps (the multiprocess executor's parent; else itself)."""
    parent = multiprocessing.parent_process()
    return Beater(
        socket.gethostname(),
        _pid_namespace(),
        os.getpid(),
        parent.pid if parent and parent.pid else os.getpid(),
    )


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    """Whether a local process exists (a zombie counts as gone). Unknown (not POSIX) counts as alive."""
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in {"Z", "X"}
    except (OSError, IndexError):
        return True


def beat(instance: dg.DagsterInstance, run_id: str) -> None:
    """Stamp the run's heartbeat tags now."""
    instance.add_run_tags(
        run_id,
        {
            HEARTBEAT_TAG: datetime.now(UTC).isoformat(timespec="milliseconds"),
            HEARTBEAT_BY_TAG: this_process().encode(),
        },
    )


def heartbeat_of(run: dg.DagsterRun) -> tuple[datetime | None, Beater | None]:
    raw = (run.tags or {}).get(HEARTBEAT_TAG)
    try:
        at = datetime.fromisoformat(raw) if raw else None
    except ValueError:
        at = None
    return at, Beater.decode((run.tags or {}).get(HEARTBEAT_BY_TAG))
