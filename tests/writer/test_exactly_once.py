"""Exactly once, attacked as an outsider would: shared reference ids, a server that forgets idempotency keys,
a lost ledger, a second run at the same time, two syncs on one token, repeated runs. Every test asserts what
the sandbox stored per key, not only what the report says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from tests.writer import (
    CLEAR,
    NS,
    WMS,
    WMS_TOKEN,
    CountingClient,
    assert_exactly_once,
    frame,
    make_client,
    order_body,
    orders,
)
from trackstar_dagster.base.keys import create_idempotency_key, has_tag, key_tag
from trackstar_dagster.sandbox.server import run_sandbox
from trackstar_dagster.writer import FailurePolicy, write_payloads
from trackstar_dagster.writer.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]


def write(sb, payloads, ledger, **options):
    client = CountingClient(make_client(sb, timeout=1.0))
    options.setdefault("namespace", NS)
    options.setdefault("max_attempts", 3)
    report = write_payloads(payloads, client, {WMS: WMS_TOKEN}, ledger, backoff_base=0.01, **options)
    return report, client


def holders(sb, tag):
    return [r for r in sb.records("orders", token=WMS_TOKEN) if has_tag(r, tag)]


def test_shared_reference_id_and_a_5xx_never_adopts_another_orders_record(sb, tmp_path):
    """ORD-5 and ORD-7 share a reference_id; ORD-7's writes get 5xx. The look-up finds ORD-5's record, which
    does not carry ORD-7's tag: ORD-7 is never reported created with ORD-5's id, and is written later."""
    ledger = Ledger(tmp_path / "l.sqlite")
    ord5 = frame([("ORD-5", WMS, "create_order", order_body(WMS, "ORD-5", reference_id="R-1"))])
    ord7 = frame([("ORD-7", WMS, "create_order", order_body(WMS, "ORD-7", reference_id="R-1"))])
    first, _ = write(sb, ord5, ledger)
    ord5_id = first.results.iloc[0]["trackstar_id"]
    sb.configure(faults={"error_5xx": 1.0, "seed": 3})
    report, client = write(sb, ord7, ledger)
    sb.configure(faults=CLEAR)
    row = report.results.iloc[0]
    assert row["status"] == "failed" and row["trackstar_id"] != ord5_id
    assert "unknown" in row["error"] or "attempts" in row["error"]
    assert client.reads >= 1  # it did look, and did not adopt
    again, _ = write(sb, ord7, ledger)
    assert again.results.iloc[0]["status"] == "created"
    assert again.results.iloc[0]["trackstar_id"] != ord5_id
    assert_exactly_once(sb, pd.concat([ord5, ord7], ignore_index=True))


def test_shared_reference_id_commit_then_502_without_server_idempotency(sb, tmp_path):
    """The write of ORD-7 is stored, then answered 502, and the server does not honour Idempotency-Key:
    the look-up finds ORD-7's own record by its tag and adopts it; ORD-5's record is left alone."""
    ledger = Ledger(tmp_path / "l.sqlite")
    ord5 = frame([("ORD-5", WMS, "create_order", order_body(WMS, "ORD-5", reference_id="R-1"))])
    ord7 = frame([("ORD-7", WMS, "create_order", order_body(WMS, "ORD-7", reference_id="R-1"))])
    write(sb, ord5, ledger)
    sb.configure(faults={"commit_then_fail": 1.0, "ignore_idempotency_key": True, "seed": 4})
    report, client = write(sb, ord7, ledger)
    sb.configure(faults=CLEAR)
    row = report.results.iloc[0]
    mine = holders(sb, key_tag("create_order", "ORD-7", NS))
    assert len(mine) == 1 and row["status"] == "created" and row["trackstar_id"] == mine[0]["id"]
    assert row["reconciled"] and client.writes == 1
    assert len(holders(sb, key_tag("create_order", "ORD-5", NS))) == 1


def test_lost_ledger_and_forgotten_keys_send_nothing_again(sb, tmp_path):
    """200 orders written; the ledger file is deleted and the server no longer replays keys. The rerun
    learns what Trackstar holds (one listing, matched by tag) and sends nothing already there."""
    payloads = orders(200)
    first, _ = write(sb, payloads, Ledger(tmp_path / "a.sqlite"))
    assert first.counts["created"] == 200
    (tmp_path / "a.sqlite").unlink()
    sb.configure(faults={"ignore_idempotency_key": True})
    ledger = Ledger(tmp_path / "a.sqlite")
    report, client = write(sb, payloads, ledger)
    assert client.writes == 0 and client.reads == 1  # one page of 1,000
    assert report.counts["unchanged"] == 200 and report.total == 200
    assert dict(zip(report.results["key"], report.results["trackstar_id"], strict=True)) == dict(
        zip(first.results["key"], first.results["trackstar_id"], strict=True)
    )
    assert_exactly_once(sb, payloads)
    # after the rebuild, upsert updates only the records whose held fields differ
    changed = payloads.copy()
    bodies = [json.loads(b) for b in changed["body"]]
    for b in bodies[:7]:
        b["order_number"] += "-v2"
    changed = frame([(k, WMS, "create_order", b) for k, b in zip(changed["key"], bodies, strict=True)])
    upsert, client = write(sb, changed, ledger, mode="upsert")
    assert upsert.counts["updated"] == 7 and upsert.counts["unchanged"] == 193 and client.writes == 7
    assert_exactly_once(sb, payloads)


def test_a_ledger_rebuilt_by_hand_is_verified_by_the_next_upsert(sb, tmp_path):
    from trackstar_dagster.writer.rebuild import rebuild_ledger

    payloads = orders(30)
    write(sb, payloads, Ledger(tmp_path / "a.sqlite"))
    ledger = Ledger(tmp_path / "b.sqlite")
    client = make_client(sb)
    assert rebuild_ledger(client, ledger, namespace=NS, connection=WMS, token=WMS_TOKEN) == 30
    assert rebuild_ledger(client, ledger, namespace="other_sync", connection=WMS, token=WMS_TOKEN) == 0
    sb.configure(faults={"ignore_idempotency_key": True})
    report, counting = write(sb, payloads, ledger, mode="upsert", rebuild="never")
    assert report.counts["unchanged"] == 30 and counting.writes == 0
    again, counting = write(sb, payloads, ledger, mode="upsert", rebuild="never")
    assert again.counts["unchanged"] == 30 and counting.writes == 0 and counting.reads == 0  # hashes verified
    assert_exactly_once(sb, payloads)


def test_two_syncs_on_one_token_keep_their_own_records(sb, tmp_path):
    """Sync a and sync b both have an order keyed 1001 on the same token; b's writes get 5xx first. b never
    adopts a's record, and each sync ends with its own record."""
    ledger = Ledger(tmp_path / "shared.sqlite")  # one ledger for both, as on one Dagster instance
    a = frame([("1001", WMS, "create_order", order_body(WMS, "1001", ns="sync_a", reference_id="1001"))])
    b = frame([("1001", WMS, "create_order", order_body(WMS, "1001", ns="sync_b", reference_id="1001"))])
    ra, _ = write(sb, a, ledger, namespace="sync_a")
    sb.configure(faults={"error_5xx": 1.0, "seed": 5})
    rb, _ = write(sb, b, ledger, namespace="sync_b")
    assert rb.results.iloc[0]["status"] == "failed"
    sb.configure(faults=CLEAR)
    rb, _ = write(sb, b, ledger, namespace="sync_b")
    assert rb.results.iloc[0]["status"] == "created"
    assert rb.results.iloc[0]["trackstar_id"] != ra.results.iloc[0]["trackstar_id"]
    assert len(holders(sb, key_tag("create_order", "1001", "sync_a"))) == 1
    assert len(holders(sb, key_tag("create_order", "1001", "sync_b"))) == 1
    assert set(ledger.entries(WMS)["namespace"]) == {"sync_a", "sync_b"}


def test_key_reused_400_and_409_lead_to_a_look_up_never_to_rejected(sb, tmp_path):
    """The server holds this record from another body under the same create key (a run whose ledger row was
    lost): the 400 "key reused with another body" is settled by a look-up, not reported as rejected."""
    body1 = order_body(WMS, "k1")
    body2 = order_body(WMS, "k1", service_level="Express")
    make_client(sb).write(
        "POST",
        "/wms/orders",
        body1,
        WMS_TOKEN,
        idempotency_key=create_idempotency_key(NS, WMS, "create_order", "k1", 0),
    )
    report, client = write(
        sb, frame([("k1", WMS, "create_order", body2)]), Ledger(tmp_path / "l.sqlite"), rebuild="never"
    )
    row = report.results.iloc[0]
    assert row["status"] == "unchanged" and row["body_changed"] and row["reconciled"]
    assert client.writes == 1 and client.reads >= 1
    assert len(holders(sb, key_tag("create_order", "k1", NS))) == 1


def test_a_rejected_record_fixed_is_sent_at_once(sb, tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    bad = order_body(WMS, "k1")
    del bad["order_number"]
    report, _ = write(sb, frame([("k1", WMS, "create_order", bad)]), ledger)
    assert report.results.iloc[0]["status"] == "rejected"
    assert ledger.get(WMS, "create_order", "k1", NS).generation == 1
    fixed, client = write(sb, frame([("k1", WMS, "create_order", order_body(WMS, "k1"))]), ledger)
    assert fixed.results.iloc[0]["status"] == "created" and client.writes == 1


def test_twenty_clean_runs_ledger_equals_results(sb, tmp_path):
    """Every outcome is in the ledger when the writer returns: run after run, the ledger says what the
    report says, and the server holds what both say."""
    ledger = Ledger(tmp_path / "l.sqlite")
    for run in range(20):
        payloads = orders(40, prefix=f"r{run}-")
        report, _ = write(sb, payloads, ledger, concurrency=8)
        led = ledger.entries(WMS, namespace=NS).set_index("key").loc[list(payloads["key"])]
        res = report.results.set_index("key")
        assert (res["status"] == "created").all()
        assert (led["status"] == "created").all(), run
        assert (led["trackstar_id"] == res["trackstar_id"]).all(), run
        assert led["claim_owner"].isna().all()  # claims given back
    assert len(sb.records("orders", token=WMS_TOKEN)) == 800


def test_keys_any_backend_holds_and_nul_keys_rejected(sb, tmp_path):
    long_key = "L" * 600
    payloads = frame(
        [
            (long_key, WMS, "create_order", order_body(WMS, long_key, reference=False)),
            ("ok", WMS, "create_order", order_body(WMS, "ok")),
            ("bad\x00key", WMS, "create_order", order_body(WMS, "ok2")),
        ]
    )
    ledger = Ledger(tmp_path / "l.sqlite")
    report, _ = write(sb, payloads, ledger)
    status = dict(zip(report.results["key"], report.results["status"], strict=True))
    assert status == {long_key: "created", "ok": "created", "bad\x00key": "rejected"}
    assert "NUL" in report.results.set_index("key").loc["bad\x00key", "error"]
    again, client = write(sb, payloads.iloc[:2], ledger)
    assert again.counts["unchanged"] == 2 and client.writes == 0


OVERLAP = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {root!r})
    from tests.writer import NS, WMS, WMS_TOKEN, frame, order_body
    from trackstar_dagster.client import TrackstarClient
    from trackstar_dagster.writer.ledger import Ledger
    from trackstar_dagster.writer import write_payloads

    base_url, ledger_url, start, stop, extra, out = sys.argv[1:7]
    payloads = frame([(f"o{{i}}", WMS, "create_order", order_body(WMS, f"o{{i}}", service_level=extra))
                      for i in range(int(start), int(stop))])
    client = TrackstarClient("sandbox-api-key", base_url, timeout=5, write_rate=1000, read_rate=1000)
    report = write_payloads(payloads, client, {{WMS: WMS_TOKEN}}, Ledger(ledger_url), namespace=NS,
                            concurrency=16)
    report.results[["key", "status", "trackstar_id", "body_changed"]].to_json(out, orient="records")
    """
)


def overlapping_runs(tmp_path, ledger_url):
    """Two processes at once, keys o0-o299 and o150-o449, bodies differing in one optional field; the server
    does not honour Idempotency-Key (the worst case)."""
    script = tmp_path / "overlap.py"
    script.write_text(OVERLAP.format(root=str(ROOT)))
    Ledger(ledger_url).close()  # the schema exists before both start
    with run_sandbox(
        subprocess=True,
        latency=0.02,
        write_rate=1000.0,
        read_rate=1000.0,
        faults={"ignore_idempotency_key": True},
        log_file=tmp_path / "sandbox.log",
    ) as sb:
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(script),
                    sb.base_url,
                    ledger_url,
                    a,
                    b,
                    extra,
                    str(tmp_path / f"{extra}.json"),
                ],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            for a, b, extra in (("0", "300", "Standard"), ("150", "450", "Express"))
        ]
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
        records = sb.records("orders", token=WMS_TOKEN)
    results = [json.loads((tmp_path / f"{extra}.json").read_text()) for extra in ("Standard", "Express")]
    per_key: dict[str, int] = {}
    for r in records:
        for t in r["trackstar_tags"]:
            per_key[t] = per_key.get(t, 0) + 1
    expected = {key_tag("create_order", f"o{i}", NS) for i in range(450)}
    assert set(per_key) == expected and set(per_key.values()) == {1}, "a key stored twice or not at all"
    created = [{r["key"] for r in res if r["status"] == "created"} for res in results]
    assert not created[0] & created[1], "both runs created one key"
    held = {r["id"] for r in records}
    for res in results:
        for r in res:
            assert r["status"] in ("created", "unchanged", "in_flight_elsewhere"), r
            if r["status"] in ("created", "unchanged"):
                assert r["trackstar_id"] in held
    # a key one run found claimed was written by the run holding it: every key is reported written by one
    reported = {r["key"] for res in results for r in res if r["status"] in ("created", "unchanged")}
    assert reported == {f"o{i}" for i in range(450)}
    return results


def test_overlapping_runs_in_two_processes_sqlite(tmp_path):
    overlapping_runs(tmp_path, f"sqlite:///{tmp_path / 'ledger.sqlite'}")


def test_overlapping_runs_in_two_processes_postgresql(tmp_path, pg_url):
    overlapping_runs(tmp_path, pg_url)


def test_postgresql_ledger_holds_long_and_odd_keys_and_claims(pg_url):
    from trackstar_dagster.writer.ledger import Intent, Outcome

    ledger = Ledger(pg_url)
    keys = ["L" * 600, "tab\tkey", "ünïcode-ключ", "a|b\\|c"]
    got = ledger.claim(NS, WMS, "create_order", keys, owner="A", run="run-a", ttl_s=30)
    assert set(got) == set(keys)
    assert ledger.claim(NS, WMS, "create_order", keys, owner="B", run="run-b", ttl_s=30) == {}
    written = ledger.record_intents(
        [Intent(WMS, "create_order", k, "h", "ik") for k in keys], namespace=NS, owner="A"
    )
    assert written == set(keys)
    assert (
        ledger.record_intents([Intent(WMS, "create_order", keys[0], "h", "ik")], namespace=NS, owner="B")
        == set()
    )
    ledger.record_outcomes(
        [
            Outcome(
                WMS,
                "create_order",
                k,
                "created",
                body_hash="h",
                trackstar_id=f"id{i}",
                error="nul \x00 in a server message",
            )
            for i, k in enumerate(keys)
        ],
        namespace=NS,
    )
    assert ledger.release("A") == len(keys)
    assert set(ledger.claim(NS, WMS, "create_order", keys, owner="B", run="run-b", ttl_s=30)) == set(keys)
    entries = ledger.load([(WMS, "create_order", k) for k in keys], NS)
    assert {e.trackstar_id for e in entries.values()} == {f"id{i}" for i in range(4)}
    ledger.close()


def test_the_runs_result_when_claims_are_held_elsewhere(sb, tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    payloads = orders(5)
    ledger.claim(NS, WMS, "create_order", list(payloads["key"]), owner="other", run="run-42", ttl_s=30)
    report, client = write(sb, payloads, ledger)
    assert report.counts["in_flight_elsewhere"] == 5 and client.writes == 0
    assert "run-42" in report.results.iloc[0]["error"]
    outcome = FailurePolicy().evaluate(report)
    assert not outcome.ok and outcome.retryable and 20 < outcome.retry_after_s <= 30


INTERRUPTED = textwrap.dedent(
    """
    import signal, sys
    sys.path.insert(0, {root!r})
    from tests.writer import NS, WMS, WMS_TOKEN, orders
    from trackstar_dagster.client import TrackstarClient
    from trackstar_dagster.writer.ledger import Ledger
    from trackstar_dagster.writer import write_payloads

    class Interrupted(BaseException):  # what Dagster raises in a run worker on SIGTERM
        pass

    def on_term(*_):
        raise Interrupted()

    signal.signal(signal.SIGTERM, on_term)
    client = TrackstarClient("sandbox-api-key", sys.argv[1], timeout=5, write_rate=1000, read_rate=1000)
    try:
        write_payloads(orders(400), client, {{WMS: WMS_TOKEN}}, Ledger(sys.argv[2]), namespace=NS, concurrency=8)
    except Interrupted:
        sys.exit(3)
    """
)


@pytest.mark.parametrize("attempt", range(3))
def test_sigterm_mid_run_leaves_every_outcome_in_the_ledger(tmp_path, attempt):
    """Interrupted as Dagster interrupts a run (SIGTERM -> an exception in the main thread): every answer
    that came back is in the ledger, only the requests in flight are left as intents, claims are given back."""
    import signal
    import time

    script = tmp_path / "w.py"
    script.write_text(INTERRUPTED.format(root=str(ROOT)))
    ledger_path = tmp_path / "l.sqlite"
    with run_sandbox(
        subprocess=True, latency=0.03, write_rate=1000.0, read_rate=1000.0, log_file=tmp_path / "sandbox.log"
    ) as sb:
        proc = subprocess.Popen(
            [sys.executable, str(script), sb.base_url, str(ledger_path)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        deadline = time.monotonic() + 60
        while len(sb.records("orders", token=WMS_TOKEN)) < 50 + 30 * attempt:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 3
        time.sleep(0.2)
        stored = {r["id"] for r in sb.records("orders", token=WMS_TOKEN)}
    entries = Ledger(ledger_path).entries(WMS, namespace=NS)
    created = entries[entries["status"] == "created"]
    assert set(created["trackstar_id"]) <= stored
    unaccounted = stored - set(created["trackstar_id"])
    assert len(unaccounted) <= 8  # at most the requests in flight (concurrency)
    assert set(entries["status"]) <= {"created", "intent"}
    assert entries["claim_owner"].isna().all()


class FilterIgnoringClient(CountingClient):
    """A server that ignores list filters (answers every record): the tag is still checked here."""

    async def alist_records(self, path, token, filters=None, limit=1000):
        self.reads += 1
        return await self.client.alist_records(path, token, filters=None, limit=limit)


def test_a_server_that_ignores_look_up_filters_cannot_make_us_adopt_a_stranger(sb, tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    others = orders(5, prefix="x", ns="another_sync")
    write(sb, others, Ledger(tmp_path / "other.sqlite"), namespace="another_sync")
    mine = orders(3)
    sb.configure(faults={"error_5xx": 1.0, "seed": 11})
    client = FilterIgnoringClient(make_client(sb, timeout=1.0))
    report = write_payloads(
        mine,
        client,
        {WMS: WMS_TOKEN},
        ledger,
        namespace=NS,
        max_attempts=2,
        backoff_base=0.01,
        rebuild="never",
    )
    sb.configure(faults=CLEAR)
    assert set(report.results["status"]) == {"failed"} and report.results["trackstar_id"].isna().all()
    again, _ = write(sb, mine, ledger)
    assert set(again.results["status"]) == {"created"}
    assert_exactly_once(sb, pd.concat([others, mine], ignore_index=True))
