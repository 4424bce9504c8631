"""LedgerBudget, the schedules in the ledger's database: reservations of several connections (as of several
processes) never overlap and follow one another, and many starting at once on a fresh database all work."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from trackstar_dagster.writer.ledger import Ledger
from trackstar_dagster.writer.ledger_budget import LedgerBudget


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    return str(request.getfixturevalue("pg_url"))


def test_many_budgets_starting_at_once_share_one_schedule(url: str) -> None:
    """Eight budgets (eight processes' worth of connections) on a database without the table yet, all
    reserving at once: every reservation works, and no two slots of the schedule are closer than a slot (on
    the schedule's clock: exact; on this process's clock: within what the statement took to arrive)."""
    budgets = [LedgerBudget(url) for _ in range(8)]
    slots: list[float] = []
    local: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    go = threading.Barrier(len(budgets))

    def reserve(budget: LedgerBudget) -> None:
        go.wait()
        try:
            for _ in range(5):
                got, now, mono = budget.reserve_on_db_clock("fp@api", "write", 10, 0.01)
                with lock:
                    slots.extend(got)
                    local.extend(mono + (slot - now) for slot in got)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=reserve, args=(b,)) for b in budgets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(slots) == 400
    slots.sort()
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert (
        min(gaps) > 0.01 - 1e-4
    )  # the schedule itself (float epoch seconds): one slot after another, whoever reserved
    assert slots[-1] - slots[0] == pytest.approx(399 * 0.01, abs=1e-3)
    # on this process's clock a batch shifts by the time its statement took to arrive (ms, more on a busy
    # machine): well inside the shared window's margin (SHARED_WINDOW_S - 1 s = 60 ms per second)
    local.sort()
    local_gaps = [b - a for a, b in zip(local, local[1:], strict=False)]
    assert min(local_gaps) > 0.01 - 0.03
    for b in budgets:
        b.close()


def test_the_ledger_and_its_budget_live_side_by_side(url: str) -> None:
    ledger = Ledger(url)
    budget = LedgerBudget(url)
    first = budget.reserve("fp@api", "read", 2, 0.1)
    again = budget.reserve("fp@api", "read", 2, 0.1)
    assert again[0] - first[-1] == pytest.approx(0.1, abs=0.003)
    assert first[0] >= time.monotonic() - 0.05  # an idle schedule starts now (plus its lead)
    (row,) = budget.listing()
    assert (row["token"], row["kind"]) == ("fp@api", "read") and 0 < row["seconds_ahead"] < 1
    budget.close()
    ledger.close()
