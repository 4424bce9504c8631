"""What a token budget shared through the ledger's database costs per write, in CPU of the writing process.

Two measurements, each against the process-local limiter alone as the baseline of the same run:

1. reservations: ``LedgerBudget.reserve`` of 10 slots in a loop (SQLite file; PostgreSQL when the embedded
   server of the tests can start), CPU per reservation and per write (a write uses a tenth of one);
2. acquires: 48 asyncio tasks taking slots at ``--rate`` (default 50/s, a token's write budget) through the
   ``SharedLimiter`` vs the local ``RateLimiter``; the process's CPU (every thread, the reservations' too)
   per acquire, from the OS.

    python benchmarks/budget.py [--reservations 2000] [--rate 50] [--seconds 6] [--no-postgres]

Ends with ``RESULT shared_budget_cpu_ms_per_write=... reserve_sqlite_ms=... reserve_pg_ms=...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trackstar_dagster.client.ratelimit import RateLimiter  # noqa: E402
from trackstar_dagster.client.send import LIMIT_WINDOW_S, SHARED_WINDOW_S  # noqa: E402
from trackstar_dagster.client.shared_budget import SharedLimiter  # noqa: E402
from trackstar_dagster.writer.ledger_budget import LedgerBudget  # noqa: E402


def cpu() -> float:
    return time.process_time()


def bench_reserve(url: str, n: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per reservation of 10 slots."""
    budget = LedgerBudget(url)
    budget.reserve("warm", "write", 10, 0.0001)
    c0, w0 = cpu(), time.perf_counter()
    for i in range(n):
        budget.reserve(f"bench{i % 8}", "write", 10, 0.0001)
    c1, w1 = cpu(), time.perf_counter()
    budget.close()
    return (c1 - c0) / n * 1000, (w1 - w0) / n * 1000


async def take(limiter: RateLimiter | SharedLimiter, count: int) -> None:
    left = [count]

    async def task() -> None:
        while left[0] > 0:
            left[0] -= 1
            await limiter.aacquire()

    await asyncio.gather(*(task() for _ in range(48)))


def bench_acquire(limiter: RateLimiter | SharedLimiter, count: int) -> tuple[float, float]:
    """(CPU ms per acquire, acquires per second)."""
    c0, w0 = cpu(), time.perf_counter()
    asyncio.run(take(limiter, count))
    c1, w1 = cpu(), time.perf_counter()
    return (c1 - c0) / count * 1000, count / (w1 - w0)


@contextlib.contextmanager
def postgres(enabled: bool) -> Iterator[str | None]:
    if not enabled:
        yield None
        return
    try:
        from tests.postgres import run_postgres
    except Exception as e:  # the embedded server is a dev dependency
        print(f"PostgreSQL: skipped ({type(e).__name__}: {e})")
        yield None
        return
    with run_postgres() as url:
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reservations", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, postgres(not args.no_postgres) as pg:
        sqlite_url = f"sqlite:///{Path(tmp) / 'ledger.sqlite'}"
        sq_cpu, sq_wall = bench_reserve(sqlite_url, args.reservations)
        print(f"reserve 10 slots, SQLite:     {sq_cpu:.3f} ms CPU, {sq_wall:.3f} ms wall per reservation")
        pg_cpu = pg_wall = float("nan")
        if pg:
            pg_cpu, pg_wall = bench_reserve(pg, args.reservations)
            print(f"reserve 10 slots, PostgreSQL: {pg_cpu:.3f} ms CPU, {pg_wall:.3f} ms wall per reservation")

        count = int(args.rate * args.seconds)
        local_cpu, local_rate = bench_acquire(RateLimiter(args.rate, window=LIMIT_WINDOW_S), count)
        print(f"local limiter:  {local_cpu:.4f} ms CPU per acquire, {local_rate:.1f}/s ({count} acquires)")
        budget = LedgerBudget(sqlite_url)
        budget.reserve("warm", "write", 1, 0.001)  # the engine and the table, once per process
        shared = SharedLimiter(
            budget,
            "bench-token",
            "write",
            args.rate,
            window=SHARED_WINDOW_S,
            local=RateLimiter(args.rate, window=LIMIT_WINDOW_S),
        )
        shared_cpu, shared_rate = bench_acquire(shared, count)
        budget.close()
        print(
            f"shared budget:  {shared_cpu:.4f} ms CPU per acquire, {shared_rate:.1f}/s "
            f"({shared.reserved} slots reserved, {shared.wasted} dropped late)"
        )
        added = shared_cpu - local_cpu
        print(f"added by the shared budget: {added:.4f} ms CPU per write (target <= 0.05)")
        print(
            f"RESULT shared_budget_cpu_ms_per_write={added:.4f} reserve_sqlite_ms={sq_cpu:.3f} "
            f"reserve_pg_ms={pg_cpu:.3f} shared_rate={shared_rate:.1f} local_rate={local_rate:.1f}"
        )


if __name__ == "__main__":
    main()
