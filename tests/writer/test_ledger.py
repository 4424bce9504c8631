"""The ledger: where it lives, what it remembers, and that it batches commits and shares a file safely."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.writer.ledger import LEDGER_URL_ENV, Intent, Ledger, Outcome, default_ledger_url


def test_default_location_under_dagster_home(monkeypatch, tmp_path):
    monkeypatch.delenv(LEDGER_URL_ENV, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    assert default_ledger_url() == f"sqlite:///{tmp_path / 'dh' / 'trackstar' / 'ledger.sqlite'}"
    ledger = Ledger()
    assert (tmp_path / "dh" / "trackstar" / "ledger.sqlite").exists()
    ledger.close()


def test_default_location_without_dagster_home(monkeypatch, tmp_path):
    monkeypatch.delenv(LEDGER_URL_ENV, raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path / "..")
    assert default_ledger_url() == f"sqlite:///{tmp_path / '.trackstar_dagster' / 'ledger.sqlite'}"


def test_env_override_and_relative_paths_refused(monkeypatch, tmp_path):
    monkeypatch.setenv(LEDGER_URL_ENV, f"sqlite:///{tmp_path}/x.sqlite")
    assert Ledger().url == f"sqlite:///{tmp_path}/x.sqlite"
    with pytest.raises(ConfigError, match="relative"):
        Ledger("ledger.sqlite")
    with pytest.raises(ConfigError, match="relative"):
        Ledger("sqlite:///ledger.sqlite")
    assert Ledger(tmp_path / "p.sqlite").url == f"sqlite:///{tmp_path / 'p.sqlite'}"
    Ledger("sqlite://").close()  # in memory, for throwaway use


def test_intent_then_outcomes(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    ledger.record_intents([Intent("c", "create_order", k, "h1", f"idem-{k}") for k in ("a", "b", "c")])
    a = ledger.get("c", "create_order", "a")
    assert a.status == "intent" and a.needs_reconcile and a.attempts == 1 and a.idempotency_key == "idem-a"
    ledger.record_outcomes(
        [
            Outcome(
                "c", "create_order", "a", "created", body_hash="h1", trackstar_id="ord_1", http_status=200
            ),
            Outcome("c", "create_order", "b", "rejected", body_hash="h1", http_status=422, error="bad"),
            Outcome(
                "c", "create_order", "c", "failed", body_hash="h1", outcome_unknown=True, error="timeout"
            ),
        ]
    )
    got = ledger.load([("c", "create_order", k) for k in "abcz"])
    assert set(got) == {("c", "create_order", k) for k in "abc"}
    a, b, c = (got[("c", "create_order", k)] for k in "abc")
    assert (a.status, a.trackstar_id, a.written_hash, a.needs_reconcile) == ("created", "ord_1", "h1", False)
    assert (b.status, b.last_error, b.needs_reconcile) == ("rejected", "bad", False)
    assert (c.status, c.needs_reconcile) == ("failed", True)
    # an update attempt that fails keeps what Trackstar is known to hold
    ledger.record_intents([Intent("c", "create_order", "a", "h2", "idem-a2", "update")])
    ledger.record_outcomes([Outcome("c", "create_order", "a", "failed", body_hash="h2", error="boom")])
    a = ledger.get("c", "create_order", "a")
    assert (a.status, a.trackstar_id, a.written_hash, a.body_hash, a.attempts) == (
        "failed",
        "ord_1",
        "h1",
        "h2",
        2,
    )
    assert not a.needs_reconcile
    frame = ledger.entries("c")
    assert len(frame) == 3 and set(frame["status"]) == {"failed", "rejected"}
    assert ledger.forget("c", "create_order", ["b"]) == 1
    assert len(ledger.entries()) == 2
    with pytest.raises(ValueError):
        ledger.record_outcomes([Outcome("c", "create_order", "a", "intent")])


def test_batches_are_one_commit_each_in_wal_mode(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    commits = []
    sa.event.listen(ledger.engine, "commit", lambda conn: commits.append(1))
    ledger.record_intents([Intent("c", "create_order", str(i), "h", f"k{i}") for i in range(20_000)])
    ledger.record_outcomes(
        [
            Outcome("c", "create_order", str(i), "created", body_hash="h", trackstar_id=f"o{i}")
            for i in range(20_000)
        ]
    )
    assert len(commits) == 2
    assert len(ledger.load(("c", "create_order", str(i)) for i in range(20_000))) == 20_000
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_several_processes_share_one_file(tmp_path):
    path = tmp_path / "shared.sqlite"
    Ledger(path).close()
    script = textwrap.dedent(
        f"""
        import sys
        from trackstar_dagster.writer.ledger import Intent, Ledger, Outcome
        ledger = Ledger({str(path)!r})
        who = sys.argv[1]
        for batch in range(20):
            keys = [f"{{who}}-{{batch}}-{{i}}" for i in range(50)]
            ledger.record_intents([Intent("c", "create_order", k, "h", "i" + k) for k in keys])
            ledger.record_outcomes([Outcome("c", "create_order", k, "created", body_hash="h", trackstar_id=k)
                                    for k in keys])
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(n)]) for n in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    frame = Ledger(path).entries()
    assert len(frame) == 3 * 20 * 50
    assert set(frame["status"]) == {"created"}
