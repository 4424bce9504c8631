"""A first run over many connections (the ledger knows none of them) lists what each already holds at once,
not one connection after another: each token has a read budget of its own.

What a user checks, on the sandbox's side: the listing requests of different connections arrive together
(with 200 ms of latency, one after another they would arrive at least 0.2 s apart), each connection is
listed once, and every order is still stored exactly once (an order a connection already holds is adopted,
not sent again).
"""

from __future__ import annotations

import json

import pytest

from tests.writer import NS, frame, make_client, order_body, tag_counts
from trackstar_dagster.sandbox.server import run_sandbox
from trackstar_dagster.writer import FailurePolicy, write_payloads
from trackstar_dagster.writer.ledger import Ledger

CONNECTIONS = 40
LATENCY = 0.2


def token(i: int) -> str:
    return f"first-run-token-{i:03d}"


@pytest.fixture
def many():
    with run_sandbox(
        connections={token(i): "wms_sandbox" for i in range(CONNECTIONS)}, write_rate=50.0, read_rate=10.0
    ) as sb:
        yield sb


def test_first_run_lists_connections_concurrently_and_writes_exactly_once(many, tmp_path):
    names = [f"c{i:03d}" for i in range(CONNECTIONS)]
    tokens = {name: token(i) for i, name in enumerate(names)}
    rows = [
        (key, name, "create_order", order_body(name, key))
        for name in names
        for key in (f"{name}-old", f"{name}-new")
    ]
    payloads = frame(rows)
    client = make_client(many)
    for name in names:  # each connection already holds one of its two orders (a lost ledger)
        old = payloads[payloads["key"] == f"{name}-old"].iloc[0]
        client.write("POST", "/wms/orders", json.loads(old["body"]), tokens[name])
    many.configure(latency=LATENCY)

    report = write_payloads(payloads, client, tokens, Ledger(tmp_path / "ledger.sqlite"), namespace=NS)
    client.close()

    assert FailurePolicy().evaluate(report).ok, report.failures.head()
    assert report.counts["created"] == CONNECTIONS and report.counts["unchanged"] == CONNECTIONS
    for name in names:
        mine = payloads[payloads["connection"] == name]
        assert set(tag_counts(many, mine, token=tokens[name]).values()) == {1}
        assert len(many.records("orders", tokens[name])) == 2
    # the listings, as the sandbox saw them: one per connection, arriving together
    listings = sorted(at for name in names for at, _ in many.arrivals(tokens[name], "read"))
    assert len(listings) == CONNECTIONS
    together = max(sum(1 for t in listings if start <= t < start + LATENCY) for start in listings)
    assert together >= 8, f"at most {together} listings arrived within {LATENCY} s of each other"
    span = listings[-1] - listings[0]
    assert span < CONNECTIONS * LATENCY / 4, f"the listings arrived over {span:.1f} s"
