"""Getting a run's outcomes into the ledger, and its claims given back, whatever happens to the run.

Outcomes are queued by ``Results`` as records finish and written in batches by one background task, so no
sender waits on the database. At the end (return, error or cancellation) ``close`` makes sure every queued
outcome reached the ledger before the claims are released: a record whose outcome was lost would be looked
up again by the next run (safe, but slow); a claim released before its outcome would let another run send
a record this one had just written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from .ledger import Ledger
from .ledger_table import Outcome
from .results import Results


class OutcomeFlusher:
    """The task that writes queued outcomes (``run``) and the end of a run's ledger work (``close``)."""

    def __init__(
        self, ledger: Ledger, results: Results, *, namespace: str, owner: str, log: logging.Logger | Any
    ) -> None:
        self.ledger = ledger
        self.results = results
        self.namespace = namespace
        self.owner = owner
        self.log = log
        self._closing = asyncio.Event()
        self._writing: asyncio.Future[None] | None = None

    async def _write(self, batch: list[Outcome]) -> None:
        """One batch into the ledger, in a thread; the write goes on to its end even if we are cancelled."""
        self._writing = asyncio.ensure_future(
            asyncio.to_thread(self.ledger.record_outcomes, batch, namespace=self.namespace)
        )
        await asyncio.shield(self._writing)

    async def run(self) -> None:
        """Write outcomes every 0.25 s, and until the queue is empty once the run closes.
        A failed write puts its batch back (nothing queued is ever dropped)."""
        failures = 0
        while True:
            closing = self._closing.is_set()
            if self.results.outcomes:
                batch = self.results.take_outcomes()
                try:
                    await self._write(batch)
                    failures = 0
                except asyncio.CancelledError:
                    if self._writing is not None and self._writing.done() and self._writing.exception():
                        self.results.put_back(batch)  # it failed: close writes it again
                    raise
                except Exception as e:
                    self.results.put_back(batch)
                    failures += 1
                    if closing and failures >= 5:
                        raise
                    self.log.warning(
                        f"Trackstar writer: writing {len(batch)} outcomes to the ledger failed "
                        f"({type(e).__name__}: {e}); retrying"
                    )
                    await asyncio.sleep(min(0.2 * 2**failures, 5.0))
                continue
            if closing:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), 0.25)

    async def close(self, task: asyncio.Task[None]) -> None:
        """Every queued outcome into the ledger, then the claims given back, even when the run is being
        cancelled (SIGTERM, a cancelled Dagster run, ``asyncio.run`` cancelling every task at its end): the
        flusher ``task`` is waited for, a write it had started is finished, and what it left is written here."""
        self._closing.set()
        cancelled = False

        async def settle(awaitable: Any) -> None:
            nonlocal cancelled
            while not awaitable.done():
                try:
                    await asyncio.shield(awaitable)
                except asyncio.CancelledError:
                    cancelled = cancelled or not awaitable.done() or awaitable.cancelled()
                except Exception:
                    return

        await settle(task)
        if self._writing is not None:
            await settle(self._writing)
        try:
            if self.results.outcomes:  # the flusher was cancelled or gave up: write what it left, once more
                batch = self.results.take_outcomes()
                await settle(
                    asyncio.ensure_future(
                        asyncio.to_thread(self.ledger.record_outcomes, batch, namespace=self.namespace)
                    )
                )
            failed = None if task.cancelled() else task.exception()
            if failed is not None:
                raise failed
        finally:
            await settle(asyncio.ensure_future(asyncio.to_thread(self.ledger.release, self.owner)))
        if cancelled:
            raise asyncio.CancelledError
