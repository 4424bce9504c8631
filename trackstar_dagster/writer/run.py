"""The concurrent, rate-limited, exactly-once writer: ``awrite_payloads`` (``write_payloads``, its sync
face, runs it on a loop of its own: ``loop_thread``).

Sends the bodies of a payloads frame (``key, connection, action, body, body_hash[, tag]``) with the async
client: many requests in flight per connection (its rate times the latency it sees: ``InFlight``; the
client's per-token limiter keeps each connection within its 50 writes/s), all connections at once. Exactly
once, without trusting the server's idempotency alone:

* **claims**: before deciding anything, the run claims its keys in the ledger (atomic, expiring on the
  database's clock, renewed while held). A key a live run elsewhere holds is reported ``in_flight_elsewhere``
  and not touched; an expired claim is taken over and its record looked up first (``plan``);
* **ledger**: a record whose ledger row says Trackstar holds this body is ``unchanged`` and not sent; an
  intent is committed before a request leaves, every outcome before the run returns or raises (``flush``);
* **a lost ledger**: when the ledger has no history of a connection, the run first lists what Trackstar
  holds and matches it by tag (``rebuild``), so a rerun sends nothing already there;
* **proof**: an unknown outcome (timeout, 5xx, dropped connection, 409, a 400 "key reused") is settled by a
  look-up that adopts only a record carrying this record's tag (``reconcile``), else the body is re-sent;
* **idempotency keys** that cannot hurt (``send``).

A run is one ``Run``: it builds its collaborators (``Planner``, ``Sender``, ``Reconciler``, ``Results``,
``OutcomeFlusher``), then per connection one committer (intents in batches) and as many workers as the
connection needs in flight (or a fixed ``concurrency``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal

import pandas as pd

from ..base.keys import check_namespace
from ..base.redaction import redacted_logger
from ..client import LIMIT_WINDOW_S
from .collector import quiet_collector
from .flush import OutcomeFlusher
from .lanes import InFlight, Item, Lane, Pacer, RetryPolicy, WriterClient, utcnow
from .ledger import Ledger
from .ledger_table import Intent
from .plan import Mode, Planner
from .reconcile import Reconciler
from .report import WriteReport
from .results import Results
from .send import Sender

PACE_SHARE = 0.99  # of the client's write rate: a little headroom against the server's own window
MAX_CONSECUTIVE_5XX = 20  # then the connection is stopped: Trackstar or the integration is down
MAX_IN_FLIGHT = (
    150  # per connection when in flight follows latency: the client's pool (50 writes/s up to 3 s)
)
UNPACED_IN_FLIGHT = 64  # per connection, when there is no rate to size it by
CLAIM_TTL_S = 60.0  # a claim not renewed for this long (database clock) belongs to a dead run
_log = redacted_logger("trackstar_dagster.writer")


class Run:
    """One call of ``awrite_payloads``: lanes per connection, their committers and workers, the claims'
    renewal and the progress log, around the collaborators that do the work."""

    def __init__(
        self,
        payloads: pd.DataFrame,
        client: WriterClient | Mapping[str, WriterClient],
        tokens: Mapping[str, str],
        ledger: Ledger,
        *,
        mode: str,
        namespace: str | None,
        run_label: str | None,
        rebuild: str,
        rebuild_since: str | None,
        claim_ttl_s: float,
        concurrency: int | None,
        pace: Callable[[Any], float | None],
        retry: RetryPolicy,
        progress_every_s: float,
        logger: logging.Logger | Any,
        max_consecutive_5xx: int = MAX_CONSECUTIVE_5XX,
    ) -> None:
        self.payloads = payloads
        self.client = client
        self.tokens = tokens
        self.ledger = ledger
        self.mode = mode
        self.namespace = check_namespace(namespace) or ""
        self.owner = uuid.uuid4().hex
        self.claim_ttl_s = float(claim_ttl_s)
        self.concurrency = max(1, int(concurrency)) if concurrency else None  # None: follow the latency
        self.pace = pace
        self.progress_every_s = progress_every_s
        self.log = logger or _log
        self.lanes: dict[str, Lane] = {}
        self.lane_tasks: list[asyncio.Task[None]] = []  # committers and workers (workers come and go)
        self.results = Results(self.log, max_consecutive_5xx=max_consecutive_5xx)
        self.reconciler = Reconciler(self.results, retry, mode=mode, log=self.log)
        self.sender = Sender(self.results, self.reconciler, retry, tag_namespace=namespace, log=self.log)
        self.flusher = OutcomeFlusher(
            ledger, self.results, namespace=self.namespace, owner=self.owner, log=self.log
        )
        self.planner = Planner(
            ledger,
            self.results,
            self.lane,
            tokens=tokens,
            clients=client,
            mode=mode,
            namespace=self.namespace,
            tag_namespace=namespace,
            owner=self.owner,
            run_label=run_label,
            rebuild=rebuild,
            rebuild_since=rebuild_since,
            claim_ttl_s=self.claim_ttl_s,
            log=self.log,
        )

    def client_for(self, connection: str) -> WriterClient:
        if isinstance(self.client, Mapping):
            return self.client[connection]
        return self.client

    def lane(self, connection: str) -> Lane:
        """The connection's lane, made on first use (its client, and its pacer at that client's rate)."""
        lane = self.lanes.get(connection)
        if lane is None:
            lane = self.lanes[connection] = Lane(
                connection, self.tokens[connection], self.client_for(connection)
            )
            lane.pacer = Pacer(self.pace(lane.client))
            if self.concurrency is not None:
                lane.in_flight = InFlight(None, self.concurrency)
            else:
                rate = 1 / lane.pacer.interval if lane.pacer.interval else auto_pace(lane.client)
                lane.in_flight = InFlight(rate, MAX_IN_FLIGHT if rate else UNPACED_IN_FLIGHT)
        return lane

    # -- the lanes ------------------------------------------------------------------------------------

    async def committer(self, lane: Lane) -> None:
        """Commit intents in batches (only for keys this run still holds), right before releasing each batch
        to the senders."""
        while lane.unfinished > 0:
            # intents committed ahead of the senders, a window's worth per statement (a statement costs
            # ~2 ms however few rows it has: 0.15 ms per row at 16 rows, 0.05 at 48)
            size = max(16, lane.in_flight.target)
            if lane.pending and lane.ready.qsize() < size:
                batch = [lane.pending.popleft() for _ in range(min(size, len(lane.pending)))]
                if lane.stop_reason is not None:
                    for item in batch:
                        self.results.finish(lane, item, "failed", error=lane.stop_reason)
                    continue
                intents = [
                    Intent(
                        i.connection,
                        i.action,
                        i.key,
                        i.body_hash,
                        self.sender.idempotency_key(i),
                        i.operation,
                    )
                    for i in batch
                ]
                written = await asyncio.to_thread(
                    self.ledger.record_intents,
                    intents,
                    namespace=self.namespace,
                    owner=self.owner,
                    ttl_s=self.claim_ttl_s,
                )
                for item in batch:
                    if item.key in written:
                        lane.ready.put_nowait(item)
                    else:  # our claim expired and another run took it over: it is theirs now
                        self.log.warning(
                            f"Trackstar writer: lost the claim on key {item.key!r} of "
                            f"{item.connection!r} to another run; not sent"
                        )
                        self.planner.in_flight_elsewhere(item)
                        lane.unfinished -= 1
                continue
            lane.wake.clear()
            if lane.unfinished > 0 and not (lane.pending and lane.ready.qsize() < size):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.wake.wait(), 0.5)
        lane.ready.put_nowait(None)  # the end: each worker passes it on to the next

    def staff(self, lane: Lane) -> None:
        """Start workers until the lane has as many as it needs in flight."""
        while lane.workers < lane.in_flight.target:
            lane.workers += 1
            self.lane_tasks.append(asyncio.create_task(self.worker(lane)))

    async def worker(self, lane: Lane) -> None:
        """Send the lane's records one after the other; leave when the lane needs fewer in flight."""
        try:
            while True:
                item = await lane.ready.get()
                lane.wake.set()
                if item is None:
                    lane.ready.put_nowait(None)
                    return
                try:
                    await self.process(lane, item)
                except Exception as e:  # a bug must not lose the record's result
                    self.log.exception(f"Trackstar writer: unexpected error on key {item.key!r}")
                    item.unknown = True
                    self.results.finish(
                        lane, item, "failed", error=f"unexpected error: {type(e).__name__}: {e}"
                    )
                if lane.workers > lane.in_flight.target:
                    return
                self.staff(lane)
        finally:
            lane.workers -= 1

    async def process(self, lane: Lane, item: Item) -> None:
        if item.started is None:
            item.started = time.monotonic()
            item.started_at = utcnow()
        if lane.stop_reason is not None:
            self.results.finish(lane, item, "failed", error=lane.stop_reason)
            return
        if item.stage == "reconcile":
            if await self.reconciler.reconcile(lane, item):
                return
            # not there: send it (after a fresh intent)
            lane.requeue(item)
            return
        await self.sender.send(lane, item)

    # -- background -----------------------------------------------------------------------------------

    async def renewer(self) -> None:
        """Keep this run's claims alive (a third of their time to live), so a slow run is not taken over."""
        while True:
            await asyncio.sleep(self.claim_ttl_s / 3)
            try:
                await asyncio.to_thread(self.ledger.renew, self.owner, self.claim_ttl_s)
            except Exception as e:  # the next renewal may work; claims last a full ttl
                self.log.warning(f"Trackstar writer: renewing claims failed ({type(e).__name__}: {e})")

    async def progress(self, total: int, started: float) -> None:
        results = self.results
        while True:
            await asyncio.sleep(self.progress_every_s)
            elapsed = time.monotonic() - started
            rate = results.sent_ok / elapsed if elapsed > 0 else 0.0
            left = total - results.done
            eta = f"{left / rate:.0f} s" if rate > 0 else "?"
            self.log.info(
                f"Trackstar writer: {results.done}/{total} records done ({results.done / max(total, 1):.0%}), "
                f"{rate:.1f} writes/s, ETA {eta}"
            )

    async def run(self) -> WriteReport:
        started = time.monotonic()
        flusher = asyncio.create_task(self.flusher.run())
        tasks = [asyncio.create_task(self.renewer())]
        try:
            items = await self.planner.plan(self.payloads)
            total = len(self.results.rows)
            for item in items:
                lane = self.lane(item.connection)
                lane.unfinished += 1
                if item.stage == "reconcile":
                    lane.ready.put_nowait(item)
                else:
                    lane.pending.append(item)
            if items:
                self.log.info(
                    f"Trackstar writer: {total} records, {len(items)} to send over {len(self.lanes)} connection(s) "
                    f"({total - len(items)} decided without sending), mode={self.mode}"
                )
            tasks.append(asyncio.create_task(self.progress(total, started)))
            for lane in self.lanes.values():
                if lane.unfinished:
                    self.lane_tasks.append(asyncio.create_task(self.committer(lane)))
                    self.staff(lane)
            waited = 0
            while waited < len(self.lane_tasks):  # workers started meanwhile are waited for too
                waited = len(self.lane_tasks)
                await asyncio.gather(*self.lane_tasks)
        finally:
            # stop every sender first (an interrupt may have failed one task while the others run on):
            # after this, whatever came back is queued, whatever did not is an intent in the ledger
            tasks += self.lane_tasks
            for t in tasks:
                t.cancel()
            interrupted: BaseException | None = None
            try:
                await asyncio.wait(tasks)  # never raises for what the tasks raised
            except BaseException as e:  # this run itself is being cancelled: still close, then re-raise
                interrupted = e
            await self.flusher.close(flusher)
            if interrupted is not None:
                raise interrupted
        return self.results.report(time.monotonic() - started, self.mode)


async def awrite_payloads(
    payloads: pd.DataFrame,
    client: WriterClient | Mapping[str, WriterClient],
    tokens: Mapping[str, str],
    ledger: Ledger,
    *,
    mode: Mode = "create_only",
    namespace: str | None = None,
    run_label: str | None = None,
    rebuild: Literal["auto", "always", "never"] = "auto",
    rebuild_since: str | None = None,
    claim_ttl_s: float = CLAIM_TTL_S,
    concurrency: int | None = None,
    pace: float | None | Literal["auto"] = "auto",
    max_attempts: int = 5,
    max_wait_s: float = 120.0,
    backoff_base: float = 0.25,
    backoff_max: float = 8.0,
    progress_every_s: float = 5.0,
    max_consecutive_5xx: int = MAX_CONSECUTIVE_5XX,
    logger: Any = None,
    quiet_gc: bool = True,
) -> WriteReport:
    """Write every payload exactly once (see the module docstring); returns a report, never raises for
    a record's failure (the failure policy decides about the run). The report's results frame has one row
    per payload, in the payloads' order (the Dagster layer carries each payload's partition onto it so).

    ``client`` is a ``TrackstarClient`` or a mapping connection -> client (a client keeps one pool per
    access token either way); ``tokens`` maps connection -> access token.

    ``concurrency`` is a fixed number of records in flight per connection; by default (None) it follows
    each connection's rate times the latency it sees (Little's law, ``InFlight``; at most 150): ~50 at
    50 writes/s and 0.4-0.6 s, more when Trackstar slows down, a few when it is fast. The client's per-token
    limiter keeps each connection within its own rate. ``max_attempts`` bounds the
    sends of one record whose outcomes were unknown; ``max_wait_s`` bounds waiting out 429s per record;
    ``max_consecutive_5xx`` 5xx answers in a row stop a connection (the others go on).
    ``pace`` (writes/s per connection; "auto" = 99% of the client's ``write_rate``, None = off) spaces the
    sends evenly ahead of the client's limiter, which stays the hard limit.

    ``namespace`` is the sync's name: its ledger rows and the tags its bodies carry (``keys.key_tag``) are
    its own. ``run_label`` names this run in claims (e.g. the Dagster run id). ``rebuild``: learn what
    Trackstar holds before the first write of a connection the ledger knows nothing of (``auto``), on every
    run, or never; ``rebuild_since`` bounds that listing by ``trackstar_created_date``. ``claim_ttl_s``: a
    claim not renewed for this long (database clock) is taken over by the next run. ``quiet_gc``: Python's
    collector walks the process's heap less often while the run writes (``collector.quiet_collector``).
    """
    if rebuild not in ("auto", "always", "never"):
        raise ValueError(f"rebuild must be 'auto', 'always' or 'never', not {rebuild!r}")
    fixed = None if pace == "auto" else pace
    pace_for: Callable[[Any], float | None] = auto_pace if pace == "auto" else (lambda _c: fixed)
    run = Run(
        payloads,
        client,
        tokens,
        ledger,
        mode=mode,
        namespace=namespace,
        run_label=run_label,
        rebuild=rebuild,
        rebuild_since=rebuild_since,
        claim_ttl_s=claim_ttl_s,
        concurrency=concurrency,
        pace=pace_for,
        retry=RetryPolicy(max(1, int(max_attempts)), max_wait_s, backoff_base, backoff_max),
        progress_every_s=progress_every_s,
        logger=logger,
        max_consecutive_5xx=max_consecutive_5xx,
    )
    with quiet_collector(quiet_gc):
        return await run.run()


def auto_pace(client: WriterClient) -> float | None:
    """99% of what the client's limiter lets through (its rate over its window), so the limiter's queue
    stays short (tasks parked in it contend on every slot) while the limiter stays the hard limit."""
    rate = getattr(client, "write_rate", None)
    if not rate:
        return None
    return float(rate) / LIMIT_WINDOW_S * PACE_SHARE
