"""What a dry run's preview of changes costs: reads by id at a token's 10 reads/s, and the diff's CPU.

Against a sandbox (reads limited to 10/s per token, as Trackstar does): orders are written on 4 connections,
then ``ChangePreview`` reads ``--records`` changed ones. Baseline of the same run: all on one connection; then
the same number spread over the 4 (read side by side, each in its own budget). Reads refused (429) are counted
from the sandbox's arrival log. Last, the pure diff's CPU per record (``field_changes`` on an order body).

    python benchmarks/preview.py [--records 120]

Ends with ``RESULT one_token_s=... four_tokens_s=... speedup=... refused=... diff_us_per_record=...``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.writer import frame, order_body  # noqa: E402
from trackstar_dagster.client import TrackstarClient  # noqa: E402
from trackstar_dagster.sandbox.server import run_sandbox  # noqa: E402
from trackstar_dagster.writer import Ledger, write_payloads  # noqa: E402
from trackstar_dagster.writer.field_diff import field_changes  # noqa: E402
from trackstar_dagster.writer.preview import PREVIEWED, ChangePreview  # noqa: E402

TOKENS = {f"c{i}": f"bench-token-{i}" for i in range(4)}
NS = "bench"


def bodies(conns: list[str], per: int, city: str):
    rows = []
    for conn in conns:
        for i in range(per):
            body = order_body(conn, f"{conn}-o{i}", ns=NS)
            body["ship_to_address"]["city"] = city
            rows.append((f"{conn}-o{i}", conn, "create_order", body))
    return frame(rows)


def timed_preview(client, ledger, changed) -> tuple[float, int]:
    preview = ChangePreview(client, TOKENS.__getitem__, limit=len(changed), namespace=NS)
    t0 = time.perf_counter()
    got = preview.preview(changed, range(len(changed)), ledger)
    return time.perf_counter() - t0, sum(p.status == PREVIEWED for p in got.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=120)
    args = parser.parse_args()
    n = args.records
    conns = {t: "wms_sandbox" for t in TOKENS.values()}
    with (
        run_sandbox(connections=conns, write_rate=1000.0, read_rate=10.0, latency=0.0) as sb,
        tempfile.TemporaryDirectory() as tmp,
    ):
        client = TrackstarClient(sb.api_key, sb.base_url, write_rate=1000.0, read_rate=10.0)
        with Ledger(Path(tmp) / "ledger.sqlite") as ledger:
            written = bodies(list(TOKENS), n, "London")
            report = write_payloads(written, client, TOKENS, ledger, namespace=NS)
            assert report.counts["created"] == len(written), report.counts
            time.sleep(1.1)  # the writer's first-run listings used some of each token's reads
            before = sum(len(sb.arrivals(t, "read")) for t in TOKENS.values())
            one_s, one_n = timed_preview(client, ledger, bodies(["c0"], n, "Leeds"))
            time.sleep(1.1)
            four_s, four_n = timed_preview(client, ledger, bodies(list(TOKENS), n // 4, "Leeds"))
            reads = [a for t in TOKENS.values() for a in sb.arrivals(t, "read")][before:]
        client.close()
    refused = sum(1 for _, admitted in reads if not admitted)
    print(f"one token: {one_n} records previewed in {one_s:.2f} s ({one_n / one_s:.1f} reads/s)")
    print(f"four tokens: {four_n} records previewed in {four_s:.2f} s ({four_n / four_s:.1f} reads/s)")
    print(f"reads refused by the sandbox (429): {refused}")

    body = json.loads(bodies(["c0"], 1, "Leeds")["body"].iloc[0])
    held = {**json.loads(bodies(["c0"], 1, "London")["body"].iloc[0]), "id": "ord_1", "status": "open"}
    rounds = 20_000
    t0 = time.process_time()
    for _ in range(rounds):
        field_changes(body, held)
    diff_us = (time.process_time() - t0) / rounds * 1e6
    print(f"field_changes on an order body: {diff_us:.1f} us of CPU per record")
    print(
        f"RESULT one_token_s={one_s:.2f} four_tokens_s={four_s:.2f} speedup={one_s / four_s:.2f} "
        f"refused={refused} diff_us_per_record={diff_us:.1f}"
    )


if __name__ == "__main__":
    main()
