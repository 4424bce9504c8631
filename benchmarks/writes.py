"""Write throughput benchmark (issue 5 item 9); not part of ``make test``.

Starts the sandbox in a subprocess with 500 ms +/- 100 ms latency and Trackstar's 50 writes/s per token,
then writes ``--orders N`` orders with one token, N orders per token with 4 tokens, N per token with 8 tokens
(one process, 400 writes/s allowed in all), the 8 tokens again with the old settings as the baseline
(httpx's own pool, httpcore, at 64 in flight per token; ``--baseline-orders`` per token, 0 to skip), and 40
orders with a sequential reference writer (one request at a time, a plain loop). Duplicates are counted in
the sandbox's stored orders. The sandbox logs to a file and is stopped before the last line, which is exactly:

    RESULT writes_per_s=<n> share_of_limit=<x> tokens4_ratio=<x> sequential_writes_per_s=<n> duplicates=<n>
           client_cpu_ms_per_write=<ms, 8 tokens> client_cpu_ms_per_write_1token=<ms>
           client_cpu_ms_per_write_4tokens=<ms> tokens8_share=<achieved / 400>
           baseline_tokens8_share=<x> baseline_client_cpu_ms_per_write=<ms> refused_429=<n, 1-8 token phases>

(on one line; the CPU figures are the writer process's own, all its threads, from the OS, the sandbox
subprocess excluded: the steadier figure on a shared machine, where throughput moves with other load).

``--soak`` also writes 20,000 orders (over the 4 tokens) and reports the process memory over that run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from trackstar_dagster.base.keys import key_tag
from trackstar_dagster.client import TrackstarClient
from trackstar_dagster.sandbox.server import run_sandbox
from trackstar_dagster.writer import WriteReport, write_payloads
from trackstar_dagster.writer.ledger import Ledger

LIMIT = 50.0  # Trackstar's documented writes/s per access token
TOKENS = [f"bench-token-{i}" for i in range(1, 9)]
NAMESPACE = "bench"


def body(connection: str, key: str) -> dict[str, Any]:
    return {
        "order_number": f"SO-{key}",
        "reference_id": f"ref-{key}",
        "ship_to_address": {
            "full_name": "Bench Mark",
            "address1": "1 Speedway",
            "city": "Austin",
            "state": "TX",
            "postal_code": "78701",
            "country": "US",
        },
        "line_items": [{"product_id": "prod-1", "quantity": 1}],
        "trackstar_tags": [key_tag("create_order", key, NAMESPACE)],
    }


def payloads(connections: list[str], n: int, prefix: str) -> pd.DataFrame:
    rows = []
    for connection in connections:
        for i in range(n):
            key = f"{prefix}-{i}"
            text = json.dumps(body(connection, key), sort_keys=True, separators=(",", ":"))
            rows.append(
                {
                    "key": key,
                    "connection": connection,
                    "action": "create_order",
                    "body": text,
                    "body_hash": hashlib.sha256(text.encode()).hexdigest(),
                    "source_rows": [i],
                }
            )
    return pd.DataFrame(rows)


def check(report: WriteReport, label: str) -> None:
    bad = report.total - report.counts["created"]
    print(
        f"{label}: {report.total} records, {report.counts}, {report.writes_per_s:.2f} writes/s, "
        f"p50 {report.p50_latency_s or 0:.3f} s, p95 {report.p95_latency_s or 0:.3f} s, {report.elapsed_s:.1f} s",
        flush=True,
    )
    if bad:
        print(f"{label}: {bad} records not created:\n{report.failures.head(10)}", flush=True)


def refused(sb: Any) -> int:
    """Writes the sandbox has refused with a 429 so far, over every benchmark token (its arrival log)."""
    return sum(not admitted for token in TOKENS for _, admitted in sb.arrivals(token, "write"))


def cpu_ms_per_write(cpu_before: float, report: WriteReport) -> float:
    """The writer process's CPU time (all its threads, from the OS) per record written since ``cpu_before``."""
    return (time.process_time() - cpu_before) * 1000 / max(1, report.total)


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def soak(client: dict[str, TrackstarClient], tokens: dict[str, str], ledger: Ledger, total: int) -> None:
    """Write ``total`` orders over all tokens, sampling RSS every 2 s."""
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic() - t0, rss_mb()))
            stop.wait(2.0)

    frame = payloads(list(tokens), total // len(tokens), "soak")
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        report = write_payloads(frame, client, tokens, ledger, namespace=NAMESPACE, progress_every_s=10)
    finally:
        stop.set()
        sampler.join()
    check(report, "soak")
    rss = [m for _, m in samples]
    half = len(rss) // 2
    print(
        f"SOAK orders={report.total} rss_start_mb={rss[0]:.0f} rss_mid_mb={rss[half]:.0f} "
        f"rss_end_mb={rss[-1]:.0f} rss_peak_mb={max(rss):.0f} growth_second_half_mb={rss[-1] - rss[half]:.0f}",
        flush=True,
    )


def tokens8(
    new_client: Callable[[], TrackstarClient],
    names: dict[str, str],
    ledger: Ledger,
    orders: int,
    prefix: str,
    options: dict[str, Any],
) -> tuple[WriteReport, float]:
    """``orders`` per token over 8 tokens in this one process (a client each); (report, CPU ms per write)."""
    clients = {name: new_client() for name in names}
    frame = payloads(list(names), orders, prefix)
    cpu0 = time.process_time()
    report = write_payloads(
        frame, clients, names, ledger, namespace=NAMESPACE, progress_every_s=10, **options
    )
    cpu_ms = cpu_ms_per_write(cpu0, report)
    label = "8 tokens" + (f" (baseline {options})" if options else "")
    check(report, label)
    print(
        f"{label}: {report.writes_per_s / (LIMIT * len(names)):.3f} of {LIMIT * len(names):.0f} writes/s, "
        f"writer CPU {cpu_ms:.2f} ms per write",
        flush=True,
    )
    return report, cpu_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--orders", type=int, default=3000, help="orders with one token, and per token with 4"
    )
    parser.add_argument(
        "--baseline-orders",
        type=int,
        default=1500,
        help="orders per token for the 8-token baseline (httpcore, 64 in flight); 0 skips it",
    )
    parser.add_argument(
        "--sequential", type=int, default=40, help="orders for the sequential reference writer"
    )
    parser.add_argument("--soak", action="store_true", help="also write 20,000 orders and report memory")
    parser.add_argument("--workdir", type=Path, default=None, help="where the ledger and sandbox log go")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="trackstar-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        handlers=[logging.FileHandler(workdir / "benchmark.log")],
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    print(f"workdir {workdir} (sandbox log: sandbox.log, writer log: benchmark.log)", flush=True)
    connections = {token: "wms_sandbox" for token in TOKENS}
    names8 = {f"bench{i}": token for i, token in enumerate(TOKENS, start=1)}  # connection name -> token
    names = dict(list(names8.items())[:4])

    with run_sandbox(
        connections=connections,
        latency=0.4,  # 0.4 + uniform(0, 0.2): 500 ms +/- 100 ms
        jitter=0.2,
        write_rate=LIMIT,
        read_rate=10.0,
        subprocess=True,
        log_file=workdir / "sandbox.log",
    ) as sb:

        def new_client(async_transport: str = "aiohttp") -> TrackstarClient:
            return TrackstarClient(
                sb.api_key,
                sb.base_url,
                timeout=10.0,
                write_rate=LIMIT,
                read_rate=10.0,
                async_transport=async_transport,
            )

        client = new_client()
        # one client (one httpx pool) per connection: a single pool is CPU-bound past ~100 in flight
        clients = {name: new_client() for name in names}
        ledger = Ledger(workdir / "ledger.sqlite")

        one = {"bench1": names["bench1"]}
        frame1 = payloads(list(one), args.orders, "one")  # built before the clock starts, as for 8 tokens
        cpu0 = time.process_time()  # this process only: the sandbox is a subprocess, measured apart
        report1 = write_payloads(
            frame1,
            client,
            one,
            ledger,
            namespace=NAMESPACE,
            progress_every_s=10,
        )
        check(report1, "1 token")
        cpu1_ms = cpu_ms_per_write(cpu0, report1)

        frame4 = payloads(list(names), args.orders, "four")
        cpu0 = time.process_time()
        report4 = write_payloads(
            frame4,
            clients,
            names,
            ledger,
            namespace=NAMESPACE,
            progress_every_s=10,
        )
        check(report4, "4 tokens")
        cpu4_ms = cpu_ms_per_write(cpu0, report4)
        print(f"writer CPU per write: 1 token {cpu1_ms:.2f} ms, 4 tokens {cpu4_ms:.2f} ms", flush=True)

        report8, cpu8_ms = tokens8(new_client, names8, ledger, args.orders, "eight", {})
        refused_429 = refused(sb)  # this writer's phases (1, 4 and 8 tokens): each a request over the rate
        print(
            f"the sandbox refused {refused_429} writes with 429 over the 1-, 4- and 8-token phases",
            flush=True,
        )
        base8: tuple[WriteReport, float] | None = None
        if args.baseline_orders > 0:
            # the old settings: httpx's own pool and 64 requests in flight per token
            base8 = tokens8(
                lambda: new_client("httpcore"),
                names8,
                ledger,
                args.baseline_orders,
                "base",
                {"concurrency": 64},
            )

        # the reference: one request at a time, a plain loop
        seq = payloads(["bench1"], args.sequential, "seq")
        started = time.monotonic()
        for row in seq.itertuples():
            client.write("POST", "/wms/orders", json.loads(row.body), names["bench1"])
        sequential = len(seq) / (time.monotonic() - started)
        print(f"sequential: {len(seq)} orders, {sequential:.2f} writes/s", flush=True)

        if args.soak:
            soak(clients, names, ledger, 20_000)

        duplicates = 0
        for token in TOKENS:
            stored = Counter(r.get("order_number") for r in sb.records("orders", token=token))
            duplicates += sum(c - 1 for c in stored.values() if c > 1)
        client.close()
        ledger.close()

    rate1 = report1.writes_per_s
    ratio = report4.writes_per_s / rate1 if rate1 else 0.0
    share8 = report8.writes_per_s / (LIMIT * len(names8))
    base_share, base_cpu = (base8[0].writes_per_s / (LIMIT * len(names8)), base8[1]) if base8 else (0.0, 0.0)
    if base8:
        print(
            f"8 tokens side by side: now {share8:.3f} of 400/s at {cpu8_ms:.2f} ms CPU per write; "
            f"baseline (httpcore, 64 in flight) {base_share:.3f} at {base_cpu:.2f} ms",
            flush=True,
        )
    print(
        f"RESULT writes_per_s={rate1:.2f} share_of_limit={rate1 / LIMIT:.3f} tokens4_ratio={ratio:.2f} "
        f"sequential_writes_per_s={sequential:.2f} duplicates={duplicates} "
        f"client_cpu_ms_per_write={cpu8_ms:.2f} client_cpu_ms_per_write_1token={cpu1_ms:.2f} "
        f"client_cpu_ms_per_write_4tokens={cpu4_ms:.2f} tokens8_share={share8:.3f} "
        f"baseline_tokens8_share={base_share:.3f} baseline_client_cpu_ms_per_write={base_cpu:.2f} "
        f"refused_429={refused_429}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
