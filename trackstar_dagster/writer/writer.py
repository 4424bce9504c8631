"""The concurrent, rate-limited, exactly-once writer.

Sends the bodies of a payloads frame (``key, connection, action, body, body_hash[, tag]``) with the async
client: many requests in flight per connection (the client's per-token limiter keeps each connection within
its 50 writes/s), all connections at once. Exactly once, without trusting the server's idempotency alone:

* **claims**: before deciding anything, the run claims its keys in the ledger (atomic, expiring on the
  database's clock, renewed while held). A key a live run elsewhere holds is reported ``in_flight_elsewhere``
  and not touched; an expired claim is taken over and its record looked up first;
* **ledger**: a record whose ledger row says Trackstar holds this body is ``unchanged`` and not sent; an
  intent is committed before a request leaves, every outcome before the run returns or raises;
* **a lost ledger**: when the ledger has no history of a connection, the run first lists what Trackstar
  holds and matches it by tag (``rebuild``), so a rerun sends nothing already there;
* **proof**: an unknown outcome (timeout, 5xx, dropped connection, 409, a 400 "key reused") is settled by a
  look-up that adopts only a record carrying this record's tag (``reconcile``), else the body is re-sent;
* **idempotency keys** that cannot hurt: a create's key is the same for every body of a record (two runs'
  bodies collide at the server instead of both being stored) and changes only after a definite rejection.

Decision on a changed body in ``create_only`` mode: status ``unchanged`` (nothing was sent, Trackstar holds
the old body), ``error`` = "body changed; not sent in create_only mode" and ``body_changed`` = True, so it
is visible without counting as a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd

from ..base.errors import (
    TrackstarAuthError,
    TrackstarBadRequestError,
    TrackstarConflictError,
    TrackstarError,
    TrackstarNotImplementedError,
    TrackstarRateLimitError,
    TrackstarValidationError,
)
from ..base.keys import (
    check_namespace,
    create_idempotency_key,
    has_tag,
    key_id,
    key_problem,
    legacy_key_tag,
    tags_of,
    update_idempotency_key,
)
from .actions import ActionSpec, spec_for
from .ledger import ENCODING, Held, Intent, Ledger, LedgerEntry, Outcome
from .rebuild import find_tagged, held_matches, oldest
from .reconcile import BODY_CHANGED_MESSAGE, _Reconcile
from .report import (  # the public ones are re-exported for callers (see __all__)
    FAILURE_COLUMNS,
    RESULT_COLUMNS,
    STATUSES,
    FailurePolicy,
    PolicyOutcome,
    WriteReport,
)

__all__ = [
    "BODY_CHANGED_MESSAGE",
    "RESULT_COLUMNS",
    "FailurePolicy",
    "PolicyOutcome",
    "WriteReport",
    "awrite_payloads",
    "write_payloads",
]

Mode = Literal["create_only", "upsert"]
MODES = ("create_only", "upsert")

PACE_SHARE = 0.99  # of the client's write rate: a little headroom against the server's own window
MAX_CONSECUTIVE_5XX = 20  # then the connection is stopped: Trackstar or the integration is down
DEFAULT_CONCURRENCY = 64  # ~ 50 writes/s x 0.5 s latency x 1.5, then rounded up
CLAIM_TTL_S = 60.0  # a claim not renewed for this long (database clock) belongs to a dead run
_log = logging.getLogger("trackstar_dagster.writer")


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Item:
    idx: int
    key: str
    connection: str
    action: str
    body: dict[str, Any]
    body_hash: str
    spec: ActionSpec
    entry: LedgerEntry | None
    operation: str  # create | update
    stage: str  # reconcile | send
    text: str = ""  # the body's JSON text, as hashed
    tag: str | None = None  # the key tag the body carries (None: untagged, nothing can be proven)
    tags: tuple[str, ...] = ()  # every tag that proves a record is this one (current, first release's)
    generation: int = 0
    trackstar_id: str | None = None
    attempts: int = 0
    unknown: bool = False  # a request of this record may have taken effect unseen
    sent_unknown: bool = False  # one of this run's requests with this body may have been stored
    started: float | None = None
    started_at: datetime | None = None


class _Pacer:
    """Even spacing of one connection's sends, on an absolute schedule (a late wake-up does not push
    the next slot back). It keeps the client's limiter queue short: many tasks parked in a limiter
    contend on every slot and the event loop lags; here each task sleeps until its own slot."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(now, self.next)
        self.next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass(eq=False)
class _Lane:
    """One connection: its token, its queues and its stop reason."""

    connection: str
    token: str
    pending: deque[_Item] = field(default_factory=deque)  # need an intent before sending
    ready: asyncio.Queue[_Item | None] = field(default_factory=asyncio.Queue)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    unfinished: int = 0
    stop_reason: str | None = None
    server_errors: int = 0  # consecutive 5xx answers (writes and look-ups); any other answer resets it
    pacer: _Pacer = field(default_factory=lambda: _Pacer(None))
    client: Any = None


def _now() -> datetime:
    return datetime.now(UTC)


def _stop_message(connection: str, err: TrackstarError) -> str:
    said = err.error or err.message
    if isinstance(err, TrackstarNotImplementedError):
        why = "the integration does not support this action (501)"
    elif err.status == 403:
        why = "Trackstar refused writes (403): writes or this action are disabled for the connection"
    else:
        why = f"Trackstar refused the credentials ({err.status}): the API key or access token is wrong"
    return f"{why}; remaining writes of connection {connection!r} were not sent. Trackstar said: {said}"


def _key_reused(err: TrackstarError) -> bool:
    """A 400 saying the Idempotency-Key was used with another body: an earlier request of this record may
    have been stored (or is being stored); look it up, never call the record rejected."""
    return isinstance(err, TrackstarBadRequestError) and "idempotency" in str(err.error or err.message).lower()


def _json_variants(text: str) -> set[str]:
    return {json.dumps(text), json.dumps(text, ensure_ascii=False), orjson.dumps(text).decode()}


_WHOLE_SECOND = re.compile(r'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)Z"')


def legacy_body_hashes(item: _Item) -> set[str]:
    """The hashes the first release may have given this body's text: its tag without a namespace, and its
    whole-second date-times written with six zero digits (it chose the unit per batch of rows)."""
    texts = {item.text}
    if item.tag is not None:
        old = legacy_key_tag(item.action, item.key)
        texts |= {item.text.replace(new, old_text, 1) for new in _json_variants(item.tag) if new in item.text
                  for old_text in _json_variants(old)}
    texts |= {_WHOLE_SECOND.sub(r'\1.000000Z"', t) for t in texts}
    texts.discard(item.text)
    return {hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts}


class _Run(_Reconcile):
    def __init__(
        self,
        payloads: pd.DataFrame,
        client: Any,
        tokens: Mapping[str, str],
        ledger: Ledger,
        *,
        mode: str,
        namespace: str | None,
        run_label: str | None,
        rebuild: str,
        rebuild_since: str | None,
        claim_ttl_s: float,
        concurrency: int,
        pace: Any,
        max_attempts: int,
        max_wait_s: float,
        backoff_base: float,
        backoff_max: float,
        progress_every_s: float,
        logger: Any,
        max_consecutive_5xx: int = MAX_CONSECUTIVE_5XX,
    ) -> None:
        self.max_consecutive_5xx = max(1, int(max_consecutive_5xx))
        self.payloads = payloads
        self.client = client
        self.tokens = tokens
        self.ledger = ledger
        self.mode = mode
        self.namespace = check_namespace(namespace) or ""
        self.tag_namespace = namespace
        self.owner = uuid.uuid4().hex
        self.run_label = run_label
        self.rebuild = rebuild
        self.rebuild_since = rebuild_since
        self.claim_ttl_s = float(claim_ttl_s)
        self.concurrency = max(1, int(concurrency))
        self.pace = pace
        self.max_attempts = max(1, int(max_attempts))
        self.max_wait_s = max_wait_s
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.progress_every_s = progress_every_s
        self.log = logger or _log
        self.rows: list[dict[str, Any]] = []
        self.outcomes: list[Outcome] = []
        self.lanes: dict[str, _Lane] = {}
        self.stopped: dict[str, str] = {}
        self.retry_after_s: float | None = None
        self.done = 0
        self.to_send = 0
        self.sent_ok = 0
        self.first_send: float | None = None
        self.last_finish: float | None = None
        self.latencies: list[float] = []
        self.batch = max(8, self.concurrency // 4)
        self._warned_no_lookup: set[str] = set()
        self._closing = asyncio.Event()
        self._writing: asyncio.Future[None] | None = None
        self.rebuilt: dict[str, int] = {}

    def client_for(self, connection: str) -> Any:
        if isinstance(self.client, Mapping):
            return self.client[connection]
        return self.client

    def lane(self, connection: str) -> _Lane:
        lane = self.lanes.get(connection)
        if lane is None:
            lane = self.lanes[connection] = _Lane(connection, self.tokens[connection])
            lane.client = self.client_for(connection)
            lane.pacer = _Pacer(self.pace(lane.client))
        return lane

    # -- bookkeeping ----------------------------------------------------------------------------------

    def _row(self, idx: int, key: str, connection: str, action: str, status: str, **values: Any) -> None:
        row = dict.fromkeys(RESULT_COLUMNS)
        row.update(key=key, connection=connection, action=action, status=status, attempts=0)
        row.update(body_changed=False, reconciled=False, unused_fields=[])
        row.update(values)
        self.rows[idx] = row
        self.done += 1

    def _finish(self, lane: _Lane, item: _Item, status: str, *, ledger_status: str | None = None, **values: Any) -> None:
        """Result row + ledger outcome for one record; wakes the lane's end when it was the last one."""
        now = time.monotonic()
        self._row(
            item.idx,
            item.key,
            item.connection,
            item.action,
            status,
            trackstar_id=values.pop("trackstar_id", item.trackstar_id),
            attempts=item.attempts,
            started_at=item.started_at,
            finished_at=_now(),
            **values,
        )
        self.last_finish = now
        ledger_status = ledger_status or status
        if ledger_status in ("created", "updated", "failed", "rejected"):
            self.outcomes.append(
                Outcome(
                    item.connection,
                    item.action,
                    item.key,
                    ledger_status,
                    body_hash=item.body_hash,
                    trackstar_id=self.rows[item.idx]["trackstar_id"],
                    outcome_unknown=item.unknown and ledger_status == "failed",
                    http_status=values.get("http_status"),
                    request_id=values.get("request_id"),
                    error=values.get("error"),
                )
            )
        lane.unfinished -= 1
        lane.wake.set()

    def _requeue(self, lane: _Lane, item: _Item) -> None:
        """Back to the lane's queue: a fresh intent (for this body and operation) before it is sent."""
        item.stage = "send"
        lane.pending.appendleft(item)
        lane.wake.set()

    def _server_error(self, lane: _Lane, err: TrackstarError) -> bool:
        """Count consecutive 5xx of a connection; True once it is stopped for them (one clear message,
        instead of every record waiting out its retries against a server that is down)."""
        if err.status is None or err.status < 500:
            if err.status is not None:
                lane.server_errors = 0
            return lane.stop_reason is not None
        lane.server_errors += 1
        if lane.server_errors >= self.max_consecutive_5xx and lane.stop_reason is None:
            lane.stop_reason = (
                f"{lane.connection}: {lane.server_errors} consecutive 5xx answers (the last {err.status}); stopped this "
                f"connection (Trackstar or the integration is down); its remaining records were not sent and are "
                f"picked up by the next run")
            self.stopped[lane.connection] = lane.stop_reason
            self.log.error(f"Trackstar writer: {lane.stop_reason}")
        return lane.stop_reason is not None

    def _stop(self, lane: _Lane, err: TrackstarError) -> str:
        if lane.stop_reason is None:
            lane.stop_reason = _stop_message(lane.connection, err)
            self.stopped[lane.connection] = lane.stop_reason
            self.log.error(f"Trackstar writer: {lane.stop_reason}")
        return lane.stop_reason

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** max(0, attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)

    # -- planning -------------------------------------------------------------------------------------

    def parse(self) -> list[_Item]:
        """The frame's records as items; records that cannot be sent at all get their row here."""
        frame = self.payloads
        missing = {"key", "connection", "action", "body"} - set(frame.columns)
        if missing:
            raise ValueError(f"payloads frame lacks columns {sorted(missing)}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        keys = frame["key"].astype(str).tolist()
        connections = frame["connection"].astype(str).tolist()
        actions = frame["action"].astype(str).tolist()
        ids = list(zip(connections, actions, keys, strict=True))
        if len(set(ids)) != len(ids):
            dupes = pd.Series(ids)[pd.Series(ids).duplicated()].head(5).tolist()
            raise ValueError(f"payloads have duplicate (connection, action, key): {dupes}")
        bodies = frame["body"].tolist()
        hashes = frame["body_hash"].tolist() if "body_hash" in frame.columns else [None] * len(frame)
        given_tags = frame["tag"].tolist() if "tag" in frame.columns else None
        self.rows = [{} for _ in ids]
        items: list[_Item] = []
        for idx, ((connection, action, key), body, body_hash) in enumerate(zip(ids, bodies, hashes, strict=True)):
            problem = key_problem(key)
            if problem:
                self._row(idx, key, connection, action, "rejected", error=problem)
                continue
            text = body if isinstance(body, str) else json.dumps(body, sort_keys=True, separators=(",", ":"))
            body_hash = str(body_hash) if body_hash else hashlib.sha256(text.encode("utf-8")).hexdigest()
            try:
                parsed = json.loads(text)
            except ValueError as e:
                self._row(idx, key, connection, action, "rejected", error=f"body is not JSON: {e}")
                continue
            if not isinstance(parsed, dict):
                self._row(idx, key, connection, action, "rejected", error="body is not a JSON object")
                continue
            if connection not in self.tokens or (isinstance(self.client, Mapping) and connection not in self.client):
                reason = f"no access token (or client) for connection {connection!r}"
                self.stopped.setdefault(connection, reason)
                self._row(idx, key, connection, action, "failed", error=reason)
                continue
            try:
                spec = spec_for(action)
            except KeyError as e:
                self._row(idx, key, connection, action, "rejected", error=str(e.args[0]))
                continue
            proofs = tags_of(action, key, self.tag_namespace)
            if given_tags is not None:
                tag = given_tags[idx] if isinstance(given_tags[idx], str) and given_tags[idx] else None
            else:
                tag = next((t for t in proofs if has_tag(parsed, t)), None)
            tags = tuple(dict.fromkeys([tag, *proofs])) if tag else ()
            items.append(_Item(idx, key, connection, action, parsed, body_hash, spec, None, "create", "send",
                               text=text, tag=tag, tags=tags))
        return items

    async def plan(self) -> list[_Item]:
        """Claim every record's key, learn what Trackstar holds where the ledger knows nothing, and decide
        per record: unchanged, update, reconcile first, send, or in flight elsewhere."""
        groups: dict[tuple[str, str], list[_Item]] = {}
        for item in self.parse():
            groups.setdefault((item.connection, item.action), []).append(item)
        ready: list[_Item] = []
        for (connection, action), items in groups.items():
            lane = self.lane(connection)
            keys = [i.key for i in items]
            await asyncio.to_thread(self.ledger.adopt_legacy, self.namespace, connection, action,
                                    [key_id(k) for k in keys])
            if await self._should_rebuild(connection, action, items):
                await self._rebuild(lane, items)
            claimed = await asyncio.to_thread(
                self.ledger.claim, self.namespace, connection, action, keys, owner=self.owner,
                run=self.run_label, ttl_s=self.claim_ttl_s)
            unverified: list[_Item] = []
            for item in items:
                entry = claimed.get(item.key)
                if entry is None:
                    self._in_flight_elsewhere(item)
                    continue
                decided = self._decide(item, entry, unverified)
                if not decided:
                    ready.append(item)
            if unverified:
                ready += await self._verify_held(lane, unverified)
        return ready

    async def _should_rebuild(self, connection: str, action: str, items: list[_Item]) -> bool:
        if self.rebuild == "never" or not any(i.tags for i in items):
            return False
        if self.rebuild == "always":
            return True
        return not await asyncio.to_thread(self.ledger.has_history, self.namespace, connection, action)

    async def _rebuild(self, lane: _Lane, items: list[_Item]) -> None:
        """The ledger knows nothing of this connection: learn which of these records Trackstar already holds
        (one listing, matched by tag) before anything is sent."""
        by_tag = {t: item for item in items for t in item.tags}
        spec = items[0].spec
        started = time.monotonic()
        try:
            found = await find_tagged(lane.client, spec, lane.token, by_tag, self.rebuild_since)
        except (TrackstarNotImplementedError, TrackstarAuthError) as e:
            if e.status == 401:
                self._stop(lane, e)
                return
            # this connection cannot list (501) or read (403) its records: nothing to learn, nothing to prove
            self.log.warning(f"Trackstar writer: {lane.connection!r} cannot list its {spec.resource} ({e.status}); "
                             f"a lost ledger cannot be rebuilt for it: exactly once rests on the ledger and on "
                             f"Trackstar honouring Idempotency-Key")
            return
        except TrackstarError as e:
            # cannot learn: sending blind could duplicate what a lost ledger had written
            lane.stop_reason = (f"{lane.connection}: could not list its {spec.resource} to learn what Trackstar "
                                f"already holds (the ledger has no history of it): {e}; its records were not sent "
                                f"(sending blind could store them twice)")
            self.stopped[lane.connection] = lane.stop_reason
            self.log.error(f"Trackstar writer: {lane.stop_reason}")
            return
        held: dict[str, Held] = {}
        for tag, records in found.items():
            item = by_tag[tag]
            if item.key in held:
                continue
            record = oldest(records)
            if len(records) > 1:
                self.log.warning(f"Trackstar writer: {len(records)} {spec.resource} of {lane.connection!r} carry the "
                                 f"tag of key {item.key!r}; adopting the oldest, {record.get('id')!r}")
            written = item.body_hash if held_matches(record, item.body) else None
            held[item.key] = Held(item.connection, item.action, key_id(item.key), str(record["id"]), written,
                                  item.key)
        n = await asyncio.to_thread(self.ledger.record_held, self.namespace, list(held.values()))
        self.rebuilt[lane.connection] = self.rebuilt.get(lane.connection, 0) + n
        say = self.log.warning if held else self.log.info
        say(
            f"Trackstar writer: the ledger had no history of {lane.connection!r} ({spec.resource}); listed what "
            f"Trackstar holds in {time.monotonic() - started:.1f} s: {len(held)} of {len(items)} records of this "
            f"run are already there and will not be sent again"
        )

    def _in_flight_elsewhere(self, item: _Item) -> None:
        run, left = self.ledger.holder(self.namespace, item.connection, item.action, item.key)
        if left is not None:
            self.retry_after_s = max(self.retry_after_s or 0.0, max(1.0, left))
        who = f"run {run!r}" if run else "another writer"
        self._row(item.idx, item.key, item.connection, item.action, "in_flight_elsewhere",
                  error=f"being written by {who} (its claim holds {max(left or 0, 0):.0f} s more); not sent")

    def _decide(self, item: _Item, entry: LedgerEntry, unverified: list[_Item]) -> bool:
        """Settle what the ledger alone can settle; False: the item goes to the lanes."""
        item.entry = entry
        item.generation = int(entry.generation or 0)
        idx, key, connection, action = item.idx, item.key, item.connection, item.action
        if entry.trackstar_id and entry.status in ("created", "updated", "failed", "intent"):
            item.trackstar_id = entry.trackstar_id
            written = entry.written_hash  # None: held, body not verified (a rebuilt ledger)
            if written == item.body_hash:
                self._row(idx, key, connection, action, "unchanged", trackstar_id=entry.trackstar_id)
                return True
            if written is not None and entry.encoding < ENCODING and written in legacy_body_hashes(item):
                self._migrated.setdefault((connection, action), {})[entry.key] = item.body_hash
                self._row(idx, key, connection, action, "unchanged", trackstar_id=entry.trackstar_id)
                return True
            if written is None:
                if self.mode == "upsert" and item.spec.update is not None:
                    unverified.append(item)
                    return True
                self._row(idx, key, connection, action, "unchanged", trackstar_id=entry.trackstar_id)
                return True
            return self._changed(item)
        if entry.needs_reconcile:
            item.stage = "reconcile"
            item.unknown = True
        return False

    def _changed(self, item: _Item) -> bool:
        """Trackstar holds another body of this record: update it (upsert) or report it (create_only)."""
        if self.mode == "create_only" or item.spec.update is None:
            error = BODY_CHANGED_MESSAGE if self.mode == "create_only" else (
                f"body changed but {item.action} has no update path; not sent"
            )
            self._row(item.idx, item.key, item.connection, item.action, "unchanged",
                      trackstar_id=item.trackstar_id, error=error, body_changed=True)
            return True
        item.operation = "update"
        return False

    async def _verify_held(self, lane: _Lane, items: list[_Item]) -> list[_Item]:
        """Records held but with no known body (a ledger rebuilt by hand), in upsert mode: read them (100 ids a
        read) and update only those whose held fields differ from the body."""
        out: list[_Item] = []
        spec = items[0].spec
        for i in range(0, len(items), 100):
            chunk = items[i:i + 100]
            records = await lane.client.alist_records(
                spec.lookup_path, lane.token, filters={"ids[in]": ",".join(str(x.trackstar_id) for x in chunk)})
            by_id = {str(r.get("id")): r for r in records}
            for item in chunk:
                record = by_id.get(str(item.trackstar_id))
                if record is not None and held_matches(record, item.body):
                    self._migrated.setdefault((item.connection, item.action), {})[item.entry.key] = item.body_hash
                    self._row(item.idx, item.key, item.connection, item.action, "unchanged",
                              trackstar_id=item.trackstar_id)
                elif not self._changed(item):
                    out.append(item)
        return out

    # -- the lanes ------------------------------------------------------------------------------------

    def _idempotency_key(self, item: _Item) -> str:
        if item.operation == "update":
            return update_idempotency_key(self.tag_namespace, item.connection, item.action, item.key, item.body_hash)
        return create_idempotency_key(self.tag_namespace, item.connection, item.action, item.key, item.generation)

    async def committer(self, lane: _Lane) -> None:
        """Commit intents in batches (only for keys this run still holds), right before releasing each batch
        to the senders."""
        while lane.unfinished > 0:
            if lane.pending and lane.ready.qsize() < self.batch:
                batch = [lane.pending.popleft() for _ in range(min(self.batch, len(lane.pending)))]
                if lane.stop_reason is not None:
                    for item in batch:
                        self._finish(lane, item, "failed", error=lane.stop_reason)
                    continue
                intents = [
                    Intent(i.connection, i.action, i.key, i.body_hash, self._idempotency_key(i), i.operation)
                    for i in batch
                ]
                written = await asyncio.to_thread(
                    self.ledger.record_intents, intents, namespace=self.namespace, owner=self.owner,
                    ttl_s=self.claim_ttl_s)
                for item in batch:
                    if item.key in written:
                        lane.ready.put_nowait(item)
                    else:  # our claim expired and another run took it over: it is theirs now
                        self.log.warning(f"Trackstar writer: lost the claim on key {item.key!r} of "
                                         f"{item.connection!r} to another run; not sent")
                        self._in_flight_elsewhere(item)
                        lane.unfinished -= 1
                continue
            lane.wake.clear()
            if lane.unfinished > 0 and not (lane.pending and lane.ready.qsize() < self.batch):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.wake.wait(), 0.5)
        for _ in range(self.concurrency):
            lane.ready.put_nowait(None)

    async def worker(self, lane: _Lane) -> None:
        while True:
            item = await lane.ready.get()
            lane.wake.set()
            if item is None:
                return
            try:
                await self.process(lane, item)
            except Exception as e:  # a bug must not lose the record's result
                self.log.exception(f"Trackstar writer: unexpected error on key {item.key!r}")
                item.unknown = True
                self._finish(lane, item, "failed", error=f"unexpected error: {type(e).__name__}: {e}")

    async def process(self, lane: _Lane, item: _Item) -> None:
        if item.started is None:
            item.started = time.monotonic()
            item.started_at = _now()
        if lane.stop_reason is not None:
            self._finish(lane, item, "failed", error=lane.stop_reason)
            return
        if item.stage == "reconcile":
            if await self.reconcile(lane, item):
                return
            # not there: send it (after a fresh intent)
            self._requeue(lane, item)
            return
        await self.send(lane, item)

    def _note_retry_after(self, err: TrackstarError) -> None:
        if err.retry_after:
            self.retry_after_s = max(self.retry_after_s or 0.0, float(err.retry_after))

    async def send(self, lane: _Lane, item: _Item) -> None:
        """Send until a definite answer; unknown outcomes are reconciled before each re-send."""
        waited = 0.0  # seconds spent waiting out 429s and 409s
        while True:
            if lane.stop_reason is not None:
                self._finish(lane, item, "failed", error=lane.stop_reason)
                return
            if item.operation == "update":
                method, path = item.spec.update_request(item.trackstar_id or "")
            else:
                method, path = item.spec.create
            key = self._idempotency_key(item)
            item.attempts += 1
            await lane.pacer.wait()
            t0 = time.monotonic()
            if self.first_send is None:
                self.first_send = t0
            try:
                resp = await lane.client.awrite(method, path, item.body, lane.token, idempotency_key=key)
            except TrackstarRateLimitError as e:
                wait = e.retry_after if e.retry_after is not None else self._backoff(item.attempts)
                waited += wait
                if waited > self.max_wait_s:
                    self._note_retry_after(e)
                    self._fail(lane, item, e, prefix="rate limited longer than the run waits")
                    return
                item.attempts -= 1  # waiting out a 429 is not an attempt
                await asyncio.sleep(wait)
                continue
            except (TrackstarAuthError, TrackstarNotImplementedError) as e:
                self._finish(
                    lane, item, "failed", error=self._stop(lane, e), http_status=e.status,
                    origin=e.origin, request_id=e.request_id,
                )
                return
            except TrackstarError as e:
                if self._server_error(lane, e):
                    self._fail(lane, item, e, prefix=lane.stop_reason or "stopped")
                    return
                collided = isinstance(e, TrackstarConflictError) or _key_reused(e)
                if not (e.outcome_unknown or collided or (e.status is None)):
                    self._reject(lane, item, e)
                    return
                if e.outcome_unknown or collided:
                    item.unknown = True
                item.sent_unknown = item.sent_unknown or bool(e.outcome_unknown)
                if item.attempts >= self.max_attempts:
                    self._note_retry_after(e)
                    self._fail(lane, item, e, prefix=f"outcome unknown after {item.attempts} attempts" if item.unknown
                               else f"gave up after {item.attempts} attempts")
                    return
                await asyncio.sleep(e.retry_after or self._backoff(item.attempts))
                if item.unknown and item.operation == "create" and await self.reconcile(lane, item):
                    return
                continue
            lane.server_errors = 0
            latency = time.monotonic() - t0
            self.latencies.append(latency)
            item.trackstar_id = resp.id or item.trackstar_id
            status = "updated" if item.operation == "update" else "created"
            if not resp.replayed:
                self.sent_ok += 1
            self._finish(
                lane, item, status, trackstar_id=item.trackstar_id, http_status=resp.status_code,
                unused_fields=list(resp.unused_fields), request_id=resp.request_id, latency_s=latency,
                reconciled=bool(resp.replayed),
            )
            if resp.unused_fields:
                self.log.debug(f"Trackstar writer: {item.key!r} unused fields {resp.unused_fields}")
            return

    def _reject(self, lane: _Lane, item: _Item, err: TrackstarError) -> None:
        error = str(err.error or err.message)
        if isinstance(err, TrackstarValidationError) and err.field_errors:
            error = "; ".join(f"{f}: {', '.join(m)}" for f, m in err.field_errors.items())
            if err.error:
                error = f"{err.error}: {error}"
        self._finish(
            lane, item, "rejected", error=error, http_status=err.status, origin=err.origin, request_id=err.request_id
        )

    def _fail(self, lane: _Lane, item: _Item, err: TrackstarError, *, prefix: str) -> None:
        self._finish(
            lane, item, "failed", error=f"{prefix}: {err}", http_status=err.status, origin=err.origin,
            request_id=err.request_id,
        )

    # -- background -----------------------------------------------------------------------------------

    async def _write_outcomes(self, batch: list[Outcome]) -> None:
        """One batch into the ledger, in a thread; the write goes on to its end even if we are cancelled."""
        self._writing = asyncio.ensure_future(
            asyncio.to_thread(self.ledger.record_outcomes, batch, namespace=self.namespace))
        await asyncio.shield(self._writing)

    async def flusher(self) -> None:
        """The task that writes outcomes: every 0.25 s, and until the queue is empty once the run closes.
        A failed write puts its batch back (nothing queued is ever dropped)."""
        failures = 0
        while True:
            closing = self._closing.is_set()
            if self.outcomes:
                batch, self.outcomes = self.outcomes, []
                try:
                    await self._write_outcomes(batch)
                    failures = 0
                except asyncio.CancelledError:
                    if self._writing is not None and self._writing.done() and self._writing.exception():
                        self.outcomes[:0] = batch  # it failed: _close writes it again
                    raise
                except Exception as e:
                    self.outcomes[:0] = batch
                    failures += 1
                    if closing and failures >= 5:
                        raise
                    self.log.warning(f"Trackstar writer: writing {len(batch)} outcomes to the ledger failed "
                                     f"({type(e).__name__}: {e}); retrying")
                    await asyncio.sleep(min(0.2 * 2 ** failures, 5.0))
                continue
            if closing:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), 0.25)

    async def renewer(self) -> None:
        """Keep this run's claims alive (a third of their time to live), so a slow run is not taken over."""
        while True:
            await asyncio.sleep(self.claim_ttl_s / 3)
            try:
                await asyncio.to_thread(self.ledger.renew, self.owner, self.claim_ttl_s)
            except Exception as e:  # the next renewal may work; claims last a full ttl
                self.log.warning(f"Trackstar writer: renewing claims failed ({type(e).__name__}: {e})")

    async def progress(self, total: int, started: float) -> None:
        while True:
            await asyncio.sleep(self.progress_every_s)
            elapsed = time.monotonic() - started
            rate = self.sent_ok / elapsed if elapsed > 0 else 0.0
            left = total - self.done
            eta = f"{left / rate:.0f} s" if rate > 0 else "?"
            self.log.info(
                f"Trackstar writer: {self.done}/{total} records done ({self.done / max(total, 1):.0%}), "
                f"{rate:.1f} writes/s, ETA {eta}"
            )

    async def run(self) -> WriteReport:
        started = time.monotonic()
        self._migrated: dict[tuple[str, str], dict[str, str]] = {}
        flusher = asyncio.create_task(self.flusher())
        tasks = [asyncio.create_task(self.renewer())]
        try:
            items = await self.plan()
            total = len(self.rows)
            for (connection, action), hashes in self._migrated.items():
                await asyncio.to_thread(self.ledger.migrate_hashes, self.namespace, connection, action, hashes)
            for item in items:
                lane = self.lane(item.connection)
                lane.unfinished += 1
                if item.stage == "reconcile":
                    lane.ready.put_nowait(item)
                else:
                    lane.pending.append(item)
            self.to_send = len(items)
            if items:
                self.log.info(
                    f"Trackstar writer: {total} records, {len(items)} to send over {len(self.lanes)} connection(s) "
                    f"({total - len(items)} decided without sending), mode={self.mode}"
                )
            tasks.append(asyncio.create_task(self.progress(total, started)))
            for lane in self.lanes.values():
                if lane.unfinished:
                    tasks.append(asyncio.create_task(self.committer(lane)))
                    tasks += [asyncio.create_task(self.worker(lane)) for _ in range(self.concurrency)]
            lane_tasks = tasks[2:]
            if lane_tasks:
                await asyncio.gather(*lane_tasks)
        finally:
            # stop every sender first (an interrupt may have failed one task while the others run on):
            # after this, whatever came back is queued, whatever did not is an intent in the ledger
            for t in tasks:
                t.cancel()
            interrupted: BaseException | None = None
            try:
                await asyncio.wait(tasks)  # never raises for what the tasks raised
            except BaseException as e:  # this run itself is being cancelled: still close, then re-raise
                interrupted = e
            await self._close(flusher)
            if interrupted is not None:
                raise interrupted
        return self.report(time.monotonic() - started)

    async def _close(self, flusher: asyncio.Task[None]) -> None:
        """Every queued outcome into the ledger, then the claims given back, even when the run is being
        cancelled (SIGTERM, a cancelled Dagster run, ``asyncio.run`` cancelling every task at its end): the
        flusher is waited for, a write it had started is finished, and what it left is written here."""
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

        await settle(flusher)
        if self._writing is not None:
            await settle(self._writing)
        try:
            if self.outcomes:  # the flusher was cancelled or gave up: write what it left, once more
                batch, self.outcomes = self.outcomes, []
                await settle(asyncio.ensure_future(
                    asyncio.to_thread(self.ledger.record_outcomes, batch, namespace=self.namespace)))
            if not flusher.cancelled() and flusher.exception() is not None:
                raise flusher.exception()
        finally:
            await settle(asyncio.ensure_future(asyncio.to_thread(self.ledger.release, self.owner)))
        if cancelled:
            raise asyncio.CancelledError

    def report(self, elapsed: float) -> WriteReport:
        results = pd.DataFrame(self.rows, columns=RESULT_COLUMNS)
        for col in ("body_changed", "reconciled"):
            results[col] = results[col].fillna(False).astype(bool)
        results["attempts"] = results["attempts"].fillna(0).astype(int)
        results["http_status"] = results["http_status"].astype("Int64")
        results["latency_s"] = results["latency_s"].astype(float)
        counts = {s: int((results["status"] == s).sum()) for s in STATUSES}
        window = (self.last_finish - self.first_send) if (self.first_send and self.last_finish) else 0.0
        lat = np.array(self.latencies) if self.latencies else None
        failures = results[results["status"].isin(["failed", "rejected"])][FAILURE_COLUMNS].reset_index(drop=True)
        report = WriteReport(
            results=results,
            counts=counts,
            total=len(results),
            elapsed_s=elapsed,
            writes_per_s=(self.sent_ok / window) if window > 0 else 0.0,
            p50_latency_s=float(np.percentile(lat, 50)) if lat is not None else None,
            p95_latency_s=float(np.percentile(lat, 95)) if lat is not None else None,
            failures=failures,
            stopped_connections=dict(self.stopped),
            retry_after_s=self.retry_after_s,
            mode=self.mode,
            sent=self.sent_ok,
        )
        self.log.info(
            f"Trackstar writer: done in {elapsed:.1f} s: "
            + ", ".join(f"{counts[s]} {s}" for s in STATUSES)
            + f"; {report.writes_per_s:.1f} writes/s"
        )
        return report


async def awrite_payloads(
    payloads: pd.DataFrame,
    client: Any,
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
) -> WriteReport:
    """Write every payload exactly once (see the module docstring); returns a report, never raises for
    a record's failure (the failure policy decides about the run).

    ``client`` is a ``TrackstarClient`` or a mapping connection -> client (one client per connection keeps
    each httpx pool small, which matters past ~100 requests in flight); ``tokens`` maps connection ->
    access token.

    ``concurrency`` is per connection (default 64: enough to keep 50 writes/s going at ~0.5 s per write);
    the client's per-token limiter keeps each connection within its own rate. ``max_attempts`` bounds the
    sends of one record whose outcomes were unknown; ``max_wait_s`` bounds waiting out 429s per record;
    ``max_consecutive_5xx`` 5xx answers in a row stop a connection (the others go on).
    ``pace`` (writes/s per connection; "auto" = 99% of the client's ``write_rate``, None = off) spaces the
    sends evenly ahead of the client's limiter, which stays the hard limit.

    ``namespace`` is the sync's name: its ledger rows and the tags its bodies carry (``keys.key_tag``) are
    its own. ``run_label`` names this run in claims (e.g. the Dagster run id). ``rebuild``: learn what
    Trackstar holds before the first write of a connection the ledger knows nothing of (``auto``), on every
    run, or never; ``rebuild_since`` bounds that listing by ``trackstar_created_date``. ``claim_ttl_s``: a
    claim not renewed for this long (database clock) is taken over by the next run.
    """
    if rebuild not in ("auto", "always", "never"):
        raise ValueError(f"rebuild must be 'auto', 'always' or 'never', not {rebuild!r}")
    pace_for = _auto_pace if pace == "auto" else (lambda _c: pace)
    run = _Run(
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
        concurrency=concurrency or DEFAULT_CONCURRENCY,
        pace=pace_for,
        max_attempts=max_attempts,
        max_wait_s=max_wait_s,
        backoff_base=backoff_base,
        backoff_max=backoff_max,
        progress_every_s=progress_every_s,
        logger=logger,
        max_consecutive_5xx=max_consecutive_5xx,
    )
    return await run.run()


def _auto_pace(client: Any) -> float | None:
    """99% of what the client's limiter lets through (its rate over its window), so the limiter's queue
    stays short (tasks parked in it contend on every slot) while the limiter stays the hard limit."""
    rate = getattr(client, "write_rate", None)
    if not rate:
        return None
    window = 1.0
    with contextlib.suppress(Exception):
        from .. import client as client_module

        window = float(getattr(client_module, "LIMIT_WINDOW_S", 1.0))
    return float(rate) / window * PACE_SHARE


def write_payloads(
    payloads: pd.DataFrame,
    client: Any,
    tokens: Mapping[str, str],
    ledger: Ledger,
    *,
    close_timeout_s: float = 60.0,
    **options: Any,
) -> WriteReport:
    """Sync wrapper of ``awrite_payloads``: runs its event loop in a thread of its own and waits for it.

    Why a thread even when the caller runs no loop: an interrupt (Dagster raises one in the run worker's main
    thread on SIGTERM or a cancelled run; Ctrl-C) must not land inside the event loop's machinery, where it
    can leave a future unresolved and the run hung. It lands here instead; the run is then cancelled
    cleanly (every outcome into the ledger, claims given back; at most ``close_timeout_s``) and the
    interrupt re-raised.
    """
    box: dict[str, Any] = {}
    ready = threading.Event()

    async def main() -> WriteReport:
        box["loop"], box["task"] = asyncio.get_running_loop(), asyncio.current_task()
        ready.set()
        try:
            return await awrite_payloads(payloads, client, tokens, ledger, **options)
        finally:
            # the client's async httpx pool belongs to this loop, which ends here
            for c in (client.values() if isinstance(client, Mapping) else [client]):
                aclose = getattr(c, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await aclose()

    done = concurrent.futures.Future()

    def run_loop() -> None:
        try:
            done.set_result(asyncio.run(main()))
        except BaseException as e:  # handed to the caller's thread
            done.set_exception(e)
        finally:
            ready.set()

    threading.Thread(target=run_loop, name="trackstar-writer", daemon=True).start()
    try:
        return done.result()
    except BaseException:
        if not done.done():
            ready.wait(close_timeout_s)
            loop, task = box.get("loop"), box.get("task")
            if loop is not None and task is not None:
                with contextlib.suppress(RuntimeError):  # the loop may have just ended
                    loop.call_soon_threadsafe(task.cancel)
            deadline = time.monotonic() + close_timeout_s
            while not done.done() and time.monotonic() < deadline:
                with contextlib.suppress(BaseException):  # a second interrupt: keep closing, within the bound
                    concurrent.futures.wait([done], timeout=max(0.0, deadline - time.monotonic()))
            if not done.done():
                _log.error("Trackstar writer: the run did not close within %.0f s of the interrupt; records in "
                           "flight stay intents and are looked up by the next run", close_timeout_s)
        raise
