"""A token's budget across OS processes: several processes sending on one token as fast as they can, through
the schedule in the ledger's database (SQLite file and PostgreSQL), against the sandbox's real limits.

What a user checks: no 429 at all, the sandbox's arrival log never holds more than the token's rate in any
1-second window (whichever process sent), the processes together still reach close to the rate, a process
joining late or killed midway does not break it, and a budget that cannot be reached sends nothing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trackstar_dagster.client import TrackstarClient
from trackstar_dagster.client.shared_budget import BudgetUnavailableError, SharedLimiters
from trackstar_dagster.sandbox.server import SandboxHandle, run_sandbox
from trackstar_dagster.writer.ledger_budget import LedgerBudget

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "sandbox-token-wms"


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """Most arrivals in any window (t - window, t], as the sandbox's sliding window counts them."""
    times = sorted(times)
    best = j = 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_max_in_window() -> None:
    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert max_in_window([0.0, 1.0, 2.0]) == 1


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def sb() -> Any:
    """In a process of its own: its rate windows judge arrivals exactly, so it must not stall with the test
    process's collector (a thread sandbox in a suite's large heap refused 13 of 600 writes once)."""
    with run_sandbox(write_rate=50.0, read_rate=10.0, latency=0.02, subprocess=True) as handle:
        yield handle


def start(sb: SandboxHandle, url: str, kind: str, count: int, label: str, at: float) -> subprocess.Popen[str]:
    env = dict(os.environ, BUDGET_API_KEY=sb.api_key, BUDGET_TOKEN=TOKEN, PYTHONPATH=str(ROOT))
    args = [url, sb.base_url, kind, str(count), label, str(at)]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.writer.budget_worker", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def check_arrivals(
    sb: SandboxHandle, kind: str, limit: int, expected: int | None
) -> tuple[list[float], float]:
    """Every arrival admitted, none over ``limit`` in any second; returns the times and the achieved rate."""
    log = sb.arrivals(TOKEN, kind)
    refused = [t for t, ok in log if not ok]
    times = sorted(t for t, _ in log)
    assert refused == [], f"{len(refused)} of {len(log)} {kind}s refused with a 429"
    if expected is not None:
        assert len(times) == expected
    assert max_in_window(times) <= limit
    rate = (len(times) - 1) / (times[-1] - times[0])
    return times, rate


def test_two_processes_writing_share_the_token_budget(sb: SandboxHandle, ledger_url: str) -> None:
    at = time.time() + 2.0  # both start together, once imported
    procs = [start(sb, ledger_url, "write", 300, f"p{i}", at) for i in range(2)]
    results = [finish(p) for p in procs]
    for r in results:
        assert (r["ok"], r["rate_limited"], r["errors"]) == (300, 0, []), r
    _, rate = check_arrivals(sb, "write", 50, 600)
    assert rate >= 0.85 * 50, f"together {rate:.1f} writes/s"
    assert len(sb.records("orders", TOKEN)) == 600


def test_two_processes_reading_share_the_token_budget(sb: SandboxHandle, ledger_url: str) -> None:
    at = time.time() + 2.0
    procs = [start(sb, ledger_url, "read", 40, f"r{i}", at) for i in range(2)]
    results = [finish(p) for p in procs]
    for r in results:
        assert (r["ok"], r["rate_limited"], r["errors"]) == (40, 0, []), r
    _, rate = check_arrivals(sb, "read", 10, 80)
    assert rate >= 0.85 * 10, f"together {rate:.1f} reads/s"


def wait_for_arrivals(sb: SandboxHandle, count: int, timeout: float = 60) -> float:
    """Wait until the token has ``count`` write arrivals; returns the time (epoch seconds)."""
    deadline = time.monotonic() + timeout
    while len(sb.arrivals(TOKEN, "write")) < count:
        assert time.monotonic() < deadline, f"fewer than {count} writes arrived in {timeout:g}s"
        time.sleep(0.05)
    return time.time()


def test_a_process_joining_late_and_one_killed_midway(sb: SandboxHandle, ledger_url: str) -> None:
    at = time.time() + 1.0
    a = start(sb, ledger_url, "write", 300, "a", at)
    b = start(sb, ledger_url, "write", 400, "b", at)
    wait_for_arrivals(sb, 60)
    c = start(sb, ledger_url, "write", 150, "c", time.time())  # joins while a and b are sending
    wait_for_arrivals(sb, 250)
    b.send_signal(signal.SIGKILL)  # dies midway, holding slots it reserved
    b.wait(timeout=30)
    killed_at = time.time()
    for r, n in ((finish(a), 300), (finish(c), 150)):
        assert (r["ok"], r["rate_limited"], r["errors"]) == (n, 0, []), r
    times, _ = check_arrivals(sb, "write", 50, None)
    by_b = [o for o in sb.records("orders", TOKEN) if o["order_number"].startswith("b-")]
    assert 0 < len(by_b) < 400
    # the slots b had reserved are lost (at most ~0.6 s of the token's budget), then a and c use it all
    after_kill = [t for t in times if t > killed_at + 1.0]
    rate = (len(after_kill) - 1) / (after_kill[-1] - after_kill[0])
    assert rate >= 0.8 * 50, f"after the kill {rate:.1f} writes/s"


@pytest.fixture(params=["postgresql", "sqlite"])
def unreachable_budget(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LedgerBudget, str]]:
    """A budget whose database does not answer in time: PostgreSQL on a port nobody listens on, or a SQLite
    file another process holds locked; with the words its error must carry."""
    if request.param == "postgresql":
        url = f"postgresql+psycopg://budget:hunter2@127.0.0.1:{free_port()}/ledger"
        budget = LedgerBudget(url, timeout=1.0)
        yield budget, "127.0.0.1"
    else:
        path = tmp_path / "ledger.sqlite"
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("PRAGMA journal_mode=WAL")
        holder.execute("BEGIN EXCLUSIVE")  # a writer that does not let go
        budget = LedgerBudget(f"sqlite:///{path}", timeout=1.0)
        yield budget, "locked"
        holder.execute("ROLLBACK")
        holder.close()
    budget.close()


def test_a_budget_that_cannot_be_reached_sends_nothing(
    sb: SandboxHandle, unreachable_budget: tuple[LedgerBudget, str]
) -> None:
    budget, why = unreachable_budget
    SharedLimiters.clear()
    client = TrackstarClient(sb.api_key, sb.base_url, slot_source=budget)
    started = time.monotonic()
    with pytest.raises(BudgetUnavailableError) as err:
        client.write("POST", "/wms/orders", {"order_number": "SO-1"}, TOKEN)
    assert time.monotonic() - started < 15
    message = str(err.value)
    assert "write budget" in message and "nothing was sent" in message and why in message
    assert "hunter2" not in message and TOKEN not in message
    with pytest.raises(BudgetUnavailableError, match="read budget"):
        client.list_records("/wms/orders", TOKEN)
    assert sb.arrivals(TOKEN, "write") == [] and sb.arrivals(TOKEN, "read") == []
    assert sb.records("orders", TOKEN) == []
    client.close()
    SharedLimiters.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_arrival_log_over_http(sb: SandboxHandle) -> None:
    """The log the tests above read, as a sandbox in another process serves it (``/_sandbox/arrivals``)."""
    client = TrackstarClient(sb.api_key, sb.base_url, write_rate=None, read_rate=None)
    client.list_records("/wms/orders", TOKEN)
    remote = SandboxHandle(sb.base_url, sb.api_key, sb.tokens)  # no in-process sandbox: HTTP only
    (at, admitted), *rest = remote.arrivals(TOKEN, "read")
    assert rest == [] and admitted and abs(at - time.time()) < 30
    assert remote.arrivals(TOKEN, "write") == [] and remote.arrivals("not-a-token", "read") == []
    remote.close_admin()
    client.close()
