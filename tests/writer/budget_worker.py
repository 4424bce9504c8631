"""One OS process sending as fast as it can on one token through the shared budget (the budget tests' worker).

``python -m tests.writer.budget_worker <ledger_url> <base_url> <kind> <count> <label> <start_at>``; the API key
and the access token come from ``$BUDGET_API_KEY`` and ``$BUDGET_TOKEN`` (never on a command line). Writes are
``count`` order creates from 48 asyncio tasks; reads are ``count`` listings from 4 threads (the blocking path).
Client retries are off, so a 429 comes back as an error and is counted. Prints one JSON line when done.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from typing import Any

from trackstar_dagster.base.errors import TrackstarError, TrackstarRateLimitError
from trackstar_dagster.client import TrackstarClient
from trackstar_dagster.writer.ledger_budget import LedgerBudget


def order(label: str, n: int) -> dict[str, Any]:
    return {
        "order_number": f"{label}-{n}",
        "reference_id": f"{label}-ref-{n}",
        "ship_to_address": {
            "address1": "1 Main St",
            "city": "Austin",
            "state": "TX",
            "postal_code": "78701",
            "country": "US",
        },
        "line_items": [{"product_id": "prod-1", "quantity": 1}],
    }


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok = 0
        self.rate_limited = 0
        self.errors: list[str] = []

    def add(self, error: BaseException | None) -> None:
        with self.lock:
            if error is None:
                self.ok += 1
            elif isinstance(error, TrackstarRateLimitError):
                self.rate_limited += 1
            else:
                self.errors.append(f"{type(error).__name__}: {error}")


async def writes(client: TrackstarClient, token: str, label: str, count: int, tally: Tally) -> None:
    todo = iter(range(count))

    async def task() -> None:
        for n in todo:
            try:
                await client.awrite("POST", "/wms/orders", order(label, n), token)
                tally.add(None)
            except TrackstarError as e:
                tally.add(e)

    await asyncio.gather(*(task() for _ in range(48)))
    await client.aclose()


def reads(client: TrackstarClient, token: str, count: int, tally: Tally) -> None:
    lock = threading.Lock()
    left = [count]

    def worker() -> None:
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            try:
                client.list_records("/wms/orders", token, limit=10)
                tally.add(None)
            except TrackstarError as e:
                tally.add(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main(argv: list[str]) -> None:
    ledger_url, base_url, kind, count, label, start_at = argv
    budget = (
        None if os.environ.get("BUDGET_OFF") else LedgerBudget(ledger_url, timeout=3.0)
    )  # off: the baseline
    client = TrackstarClient(
        os.environ["BUDGET_API_KEY"], base_url, max_retries=0, timeout=10.0, slot_source=budget
    )
    token = os.environ["BUDGET_TOKEN"]
    time.sleep(max(0.0, float(start_at) - time.time()))
    print(json.dumps({"label": label, "started": True}), flush=True)
    tally = Tally()
    t0 = time.time()
    if kind == "write":
        asyncio.run(writes(client, token, label, int(count), tally))
    else:
        reads(client, token, int(count), tally)
    print(
        json.dumps(
            {
                "label": label,
                "ok": tally.ok,
                "rate_limited": tally.rate_limited,
                "errors": tally.errors[:5],
                "n_errors": len(tally.errors),
                "seconds": time.time() - t0,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
