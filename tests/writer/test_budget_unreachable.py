"""A shared budget whose database cannot be reached stops the connection once, clearly, and fast.

The client fails closed (``BudgetUnavailableError``: no slot, no request). What a user checks: nothing reached
the sandbox (its arrival log), every record of the connection is ``failed`` with one reason that says the
budget's database could not be reached and nothing was sent, none counted as sent, the run's failure message
says so, and the run ends in seconds (not each record's retries with backoff). Whichever step meets the
budget first: the send, the lost ledger's listing (``rebuild``) or the look-up of an unknown outcome.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.writer import NS, WMS, WMS_TOKEN, orders
from trackstar_dagster.base.keys import create_idempotency_key
from trackstar_dagster.client import TrackstarClient
from trackstar_dagster.client.shared_budget import SharedLimiters
from trackstar_dagster.writer import FailurePolicy, write_payloads
from trackstar_dagster.writer.ledger import Ledger
from trackstar_dagster.writer.ledger_budget import LedgerBudget
from trackstar_dagster.writer.ledger_table import Intent

N = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["postgresql", "sqlite"])
def dead_budget(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerBudget]:
    """PostgreSQL on a port nobody listens on, or a SQLite file another connection holds locked."""
    SharedLimiters.clear()
    if request.param == "postgresql":
        budget = LedgerBudget(
            f"postgresql+psycopg://budget:hunter2@127.0.0.1:{free_port()}/ledger", timeout=1.0
        )
        yield budget
    else:
        path = tmp_path / "budget.sqlite"
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("PRAGMA journal_mode=WAL")
        holder.execute("BEGIN EXCLUSIVE")  # a writer that does not let go
        budget = LedgerBudget(f"sqlite:///{path}", timeout=1.0)
        yield budget
        holder.execute("ROLLBACK")
        holder.close()
    budget.close()
    SharedLimiters.clear()


@pytest.mark.parametrize("step", ["send", "rebuild", "reconcile"])
def test_an_unreachable_budget_stops_the_connection_once(sb, tmp_path, dead_budget, step, caplog):
    payloads = orders(N)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    if step == "reconcile":  # a crashed run's intents: each record is looked up before anything is sent
        ledger.record_intents(
            [
                Intent(
                    WMS,
                    "create_order",
                    r.key,
                    r.body_hash,
                    create_idempotency_key(NS, WMS, "create_order", r.key, 0),
                )
                for r in payloads.itertuples()
            ],
            namespace=NS,
        )
    client = TrackstarClient(sb.api_key, sb.base_url, slot_source=dead_budget, timeout=1.0)
    started = time.monotonic()
    report = write_payloads(
        payloads,
        client,
        {WMS: WMS_TOKEN},
        ledger,
        namespace=NS,
        rebuild="never" if step == "send" else "auto",
    )
    elapsed = time.monotonic() - started
    client.close()

    assert sb.arrivals(WMS_TOKEN, "write") == [] and sb.arrivals(WMS_TOKEN, "read") == []
    assert sb.records("orders", WMS_TOKEN) == []
    assert elapsed < 10, f"{elapsed:.1f} s: waited out retries instead of stopping"
    reason = report.stopped_connections[WMS]
    assert "the database of the shared rate budget could not be reached" in reason, reason
    assert "nothing was sent" in reason and "could not list" not in reason, reason
    assert "hunter2" not in reason and WMS_TOKEN not in reason
    assert report.counts["failed"] == N and report.sent == 0
    assert set(report.results["error"]) == {reason}, report.results["error"].unique()[:3]
    outcome = FailurePolicy().evaluate(report)
    assert not outcome.ok and reason in outcome.message
    # said once, not once per record
    assert (
        sum("could not be reached" in r.getMessage() for r in caplog.records if r.levelname == "ERROR") == 1
    )
    # nothing is lost: the ledger still knows an intent's outcome is unknown, so the next run looks it up
    if step == "reconcile":
        assert ledger.entries(WMS)["status"].eq("failed").all()
