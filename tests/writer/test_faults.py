"""Fault injection: every valid record ends up in the sandbox exactly once, and every result is accounted for.

Latency 0 and short client timeouts; the assertions read the sandbox's stored records, not only the report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.writer import CLEAR, NS, WMS, WMS_TOKEN, CountingClient, assert_exactly_once, make_client, orders
from trackstar_dagster.sandbox.server import run_sandbox
from trackstar_dagster.writer import FailurePolicy, write_payloads
from trackstar_dagster.writer.ledger import Ledger, wait_db_clock

N = 150
ROOT = Path(__file__).resolve().parents[2]


def run(sb, tmp_path, payloads, **options):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    client = CountingClient(make_client(sb, timeout=0.5))
    options.setdefault("max_attempts", 8)
    options.setdefault("concurrency", 16)
    report = write_payloads(payloads, client, {WMS: WMS_TOKEN}, ledger, namespace=NS, **options)
    return report, client, ledger


def assert_all_created(report, ledger, n=N):
    assert report.total == n
    assert report.counts["created"] == n, report.failures.head(10)
    assert report.results["trackstar_id"].notna().all()
    assert FailurePolicy().evaluate(report).ok
    assert set(ledger.entries(WMS)["status"]) == {"created"}


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"error_5xx": 0.1, "seed": 1}, id="5xx-10pct"),
        pytest.param({"burst_429": 40, "retry_after_s": 1, "seed": 2}, id="429-burst"),
        pytest.param({"hang": 0.1, "hang_s": 0.8, "seed": 3}, id="hang-past-timeout"),
        pytest.param({"drop": 0.1, "seed": 4}, id="dropped-connection"),
        pytest.param({"commit_then_fail": 0.1, "seed": 5}, id="commit-then-502"),
        pytest.param(
            {
                "error_5xx": 0.05,
                "drop": 0.05,
                "commit_then_fail": 0.05,
                "hang": 0.03,
                "hang_s": 0.8,
                "seed": 6,
            },
            id="mixed",
        ),
    ],
)
def test_faults_end_exactly_once(sb, tmp_path, faults):
    sb.configure(faults=faults)
    payloads = orders(N)
    report, client, ledger = run(sb, tmp_path, payloads)
    sb.configure(faults=CLEAR)
    assert_exactly_once(sb, payloads)
    assert_all_created(report, ledger)
    if "burst_429" not in faults:
        # faults did happen: re-sent, or adopted after an unknown outcome
        assert (report.results["attempts"] > 1).any() or report.results["reconciled"].any()
    # and a re-run sends nothing
    again, client2, _ = run(sb, tmp_path, payloads)
    assert again.counts["unchanged"] == N and client2.writes == 0
    assert len(sb.records("orders", token=WMS_TOKEN)) == N


def test_commit_then_fail_is_adopted_not_duplicated(sb, tmp_path):
    sb.configure(faults={"commit_then_fail": 0.3, "seed": 7})
    payloads = orders(60)
    report, client, ledger = run(sb, tmp_path, payloads)
    sb.configure(faults=CLEAR)
    assert_exactly_once(sb, payloads)
    assert_all_created(report, ledger, n=60)
    assert report.results["reconciled"].sum() > 0
    assert client.reads > 0  # looked up before re-sending


def test_transient_trouble_outliving_retries_is_failed_then_picked_up(sb, tmp_path):
    sb.configure(faults={"error_5xx": 1.0, "seed": 8})
    payloads = orders(10)
    # (below the consecutive-5xx stop: that one is a connection down, a failure with its own message)
    report, _, ledger = run(
        sb, tmp_path, payloads, max_attempts=2, backoff_base=0.01, max_consecutive_5xx=100
    )
    assert report.counts["failed"] == 10
    outcome = FailurePolicy().evaluate(report)
    assert not outcome.ok and outcome.retryable and outcome.failed_share == 1.0
    assert ledger.get(WMS, "create_order", "o0", NS).needs_reconcile
    sb.configure(faults=CLEAR)
    report, _, ledger = run(sb, tmp_path, payloads)
    assert_exactly_once(sb, payloads)
    assert_all_created(report, ledger, n=10)


SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from tests.writer import NS, WMS, WMS_TOKEN, orders
    from trackstar_dagster.client import TrackstarClient
    from trackstar_dagster.writer.ledger import Ledger
    from trackstar_dagster.writer import write_payloads

    client = TrackstarClient("sandbox-api-key", sys.argv[1], timeout=5, write_rate=1000, read_rate=1000)
    write_payloads(orders({n}), client, {{WMS: WMS_TOKEN}}, Ledger(sys.argv[2]), namespace=NS, concurrency=8,
                   claim_ttl_s=4.0)
    """
)


def test_writer_killed_mid_run_then_run_again(tmp_path):
    n = 300
    ledger_path = tmp_path / "ledger.sqlite"
    script = tmp_path / "writer.py"
    script.write_text(SCRIPT.format(root=str(ROOT), n=n))
    with run_sandbox(
        subprocess=True, latency=0.05, write_rate=1000.0, read_rate=1000.0, log_file=tmp_path / "sandbox.log"
    ) as sb:
        proc = subprocess.Popen(
            [sys.executable, str(script), sb.base_url, str(ledger_path)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        deadline = time.monotonic() + 60
        while len(sb.records("orders", token=WMS_TOKEN)) < 60:
            assert proc.poll() is None, "the writer ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        time.sleep(0.3)  # requests that were in flight land (or not)
        written = len(sb.records("orders", token=WMS_TOKEN))
        assert 60 <= written < n
        ledger = Ledger(ledger_path)
        assert (ledger.entries(WMS)["status"] == "intent").any()  # the crash left unknown outcomes

        payloads = orders(n)
        # at once: the dead run's claims have not expired; its keys are reported, not sent
        early = CountingClient(make_client(sb, timeout=5))
        blocked = write_payloads(payloads, early, {WMS: WMS_TOKEN}, ledger, namespace=NS)
        assert blocked.counts["in_flight_elsewhere"] == n and early.writes == 0
        outcome = FailurePolicy().evaluate(blocked)
        assert not outcome.ok and outcome.retryable and outcome.retry_after_s > 0
        wait_db_clock(ledger, 4.5)  # the dead run never renews: its claims expire and are taken over

        client = CountingClient(make_client(sb, timeout=5))
        report = write_payloads(payloads, client, {WMS: WMS_TOKEN}, ledger, namespace=NS, concurrency=16)
        assert_exactly_once(sb, payloads)
        assert report.counts["created"] + report.counts["unchanged"] == n
        assert client.writes == n - written
        assert report.results["reconciled"].sum() + report.counts["unchanged"] + client.writes == n
        again = write_payloads(
            payloads, CountingClient(make_client(sb)), {WMS: WMS_TOKEN}, ledger, namespace=NS
        )
        assert again.counts["unchanged"] == n
        assert json.loads(payloads.iloc[0]["body"])["order_number"] == "SO-o0"


@pytest.mark.parametrize("rebuild", ["never", "auto"])
def test_a_connection_answering_500_to_everything_is_stopped_with_one_message(tmp_path, rebuild):
    """One connection's server is down (every request 500), another's is fine: the first is stopped after
    a bounded number of consecutive 5xx with one clear message, quickly; the other is written in full."""
    from tests.writer import frame, order_body

    with (
        run_sandbox(write_rate=1000.0, read_rate=1000.0) as down,
        run_sandbox(write_rate=1000.0, read_rate=1000.0) as fine,
    ):
        down.configure(faults={"error_5xx": 1.0, "applies_to": "all", "seed": 9})
        rows = [(f"d{i}", WMS, "create_order", order_body(WMS, f"d{i}")) for i in range(40)]
        rows += [(f"f{i}", "other", "create_order", order_body("other", f"f{i}")) for i in range(40)]
        clients = {WMS: make_client(down, timeout=0.5), "other": make_client(fine, timeout=0.5)}
        started = time.monotonic()
        report = write_payloads(
            frame(rows),
            clients,
            {WMS: WMS_TOKEN, "other": WMS_TOKEN},
            Ledger(tmp_path / "l.sqlite"),
            namespace=NS,
            concurrency=8,
            max_consecutive_5xx=10,
            rebuild=rebuild,
        )
        elapsed = time.monotonic() - started
        by_conn = report.results.groupby("connection")["status"].value_counts().unstack(fill_value=0)
        assert by_conn.loc["other", "created"] == 40 and by_conn.loc[WMS, "failed"] == 40
        assert elapsed < 30, elapsed
        message = report.stopped_connections[WMS]
        if rebuild == "never":
            assert "10 consecutive 5xx answers" in message and "stopped this connection" in message
        else:  # the ledger knows nothing of it, and what Trackstar holds cannot be listed: nothing is sent
            assert "could not list its orders" in message
        outcome = FailurePolicy().evaluate(report)
        assert not outcome.ok and message in outcome.message
        assert len(fine.records("orders", token=WMS_TOKEN)) == 40
