"""One record's attempts at Trackstar: its idempotency key, the request, waiting out 429s, the outcome.

The writer decides every retry of a write: a 429 is waited out (``Retry-After``, else backoff; not counted
as an attempt, bounded by ``max_wait_s``); an unknown outcome (timeout, 5xx, dropped connection, 409, a 400
"key reused") is settled by the ``Reconciler`` before a create is sent again, with the same key; a definite
refusal is ``rejected``; 401/403/501 and a shared budget that cannot be reached (nothing sent) stop the
connection.

Idempotency keys that cannot hurt: a create's key is the same for every body of a record (two runs' bodies
collide at the server instead of both being stored) and changes only after a definite rejection (the ledger
then advances the record's generation); an update's key is that of its body.

``send_request`` is the one place a write leaves the writer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..base.errors import (
    TrackstarAuthError,
    TrackstarBadRequestError,
    TrackstarConflictError,
    TrackstarError,
    TrackstarNotImplementedError,
    TrackstarRateLimitError,
    TrackstarValidationError,
)
from ..base.keys import create_idempotency_key, update_idempotency_key
from ..client import WriteResponse
from ..client.shared_budget import BudgetUnavailableError
from .lanes import Item, Lane, RetryPolicy
from .reconcile import Reconciler
from .results import Results


def idempotency_key(namespace: str | None, item: Item) -> str:
    """The ``Idempotency-Key`` of the item's next request (also committed with its intent)."""
    if item.operation == "update":
        return update_idempotency_key(namespace, item.connection, item.action, item.key, item.body_hash)
    return create_idempotency_key(namespace, item.connection, item.action, item.key, item.generation)


def key_reused(err: TrackstarError) -> bool:
    """A 400 saying the Idempotency-Key was used with another body: an earlier request of this record may
    have been stored (or is being stored); look it up, never call the record rejected."""
    return (
        isinstance(err, TrackstarBadRequestError) and "idempotency" in str(err.error or err.message).lower()
    )


def rejection_message(err: TrackstarError) -> str:
    """What Trackstar refused about a body: its field errors when it named them."""
    error = str(err.error or err.message)
    if isinstance(err, TrackstarValidationError) and err.field_errors:
        error = "; ".join(f"{f}: {', '.join(m)}" for f, m in err.field_errors.items())
        if err.error:
            error = f"{err.error}: {error}"
    return error


async def send_request(lane: Lane, item: Item, method: str, path: str, key: str) -> WriteResponse:
    """The write request itself: the item's JSON text, byte for byte as the mapping built and hashed it, to
    ``method path`` on the lane's connection. Sent once: a 429 or any failure comes back as an error."""
    return await lane.client.awrite(
        method, path, item.content or item.text.encode("utf-8"), lane.token, idempotency_key=key
    )


class Sender:
    """Sends one record until a definite answer (see the module docstring)."""

    def __init__(
        self,
        results: Results,
        reconciler: Reconciler,
        retry: RetryPolicy,
        *,
        tag_namespace: str | None,
        log: logging.Logger | Any,
    ) -> None:
        self.results = results
        self.reconciler = reconciler
        self.retry = retry
        self.tag_namespace = tag_namespace
        self.log = log

    def idempotency_key(self, item: Item) -> str:
        """The item's key, made once for the intent and its sends (again only when what it hangs on changed)."""
        made = item.idempotency
        if made is not None and made[:3] == (item.operation, item.generation, item.body_hash):
            return made[3]
        key = idempotency_key(self.tag_namespace, item)
        item.idempotency = (item.operation, item.generation, item.body_hash, key)
        return key

    async def send(self, lane: Lane, item: Item) -> None:
        """Send until a definite answer; unknown outcomes are reconciled before each re-send."""
        results, retry = self.results, self.retry
        waited = 0.0  # seconds spent waiting out 429s
        while True:
            if lane.stop_reason is not None:
                results.finish(lane, item, "failed", error=lane.stop_reason)
                return
            if item.operation == "update":
                method, path = item.spec.update_request(item.trackstar_id or "")
            else:
                method, path = item.spec.create
            key = self.idempotency_key(item)
            item.attempts += 1
            await lane.pacer.wait()
            t0 = time.monotonic()
            results.sending(t0)
            try:
                resp = await send_request(lane, item, method, path, key)
            except TrackstarRateLimitError as e:
                wait = e.retry_after if e.retry_after is not None else retry.backoff(item.attempts)
                waited += wait
                if waited > retry.max_wait_s:
                    results.note_retry_after(e)
                    results.fail(lane, item, e, prefix="rate limited longer than the run waits")
                    return
                item.attempts -= 1  # waiting out a 429 is not an attempt
                await asyncio.sleep(wait)
                continue
            except (TrackstarAuthError, TrackstarNotImplementedError, BudgetUnavailableError) as e:
                results.finish(
                    lane,
                    item,
                    "failed",
                    error=results.stop(lane, e),
                    http_status=e.status,
                    origin=e.origin,
                    request_id=e.request_id,
                )
                return
            except TrackstarError as e:
                if results.server_error(lane, e):
                    results.fail(lane, item, e, prefix=lane.stop_reason or "stopped")
                    return
                collided = isinstance(e, TrackstarConflictError) or key_reused(e)
                if not (e.outcome_unknown or collided or (e.status is None)):
                    results.finish(
                        lane,
                        item,
                        "rejected",
                        error=rejection_message(e),
                        http_status=e.status,
                        origin=e.origin,
                        request_id=e.request_id,
                    )
                    return
                if e.outcome_unknown or collided:
                    item.unknown = True
                item.sent_unknown = item.sent_unknown or bool(e.outcome_unknown)
                if item.attempts >= retry.max_attempts:
                    results.note_retry_after(e)
                    results.fail(
                        lane,
                        item,
                        e,
                        prefix=f"outcome unknown after {item.attempts} attempts"
                        if item.unknown
                        else f"gave up after {item.attempts} attempts",
                    )
                    return
                await asyncio.sleep(e.retry_after or retry.backoff(item.attempts))
                if (
                    item.unknown
                    and item.operation == "create"
                    and await self.reconciler.reconcile(lane, item)
                ):
                    return
                continue
            lane.server_errors = 0
            latency = time.monotonic() - t0
            lane.in_flight.observe(latency)
            results.sent(latency, replayed=bool(resp.replayed))
            item.trackstar_id = resp.id or item.trackstar_id
            status = "updated" if item.operation == "update" else "created"
            results.finish(
                lane,
                item,
                status,
                trackstar_id=item.trackstar_id,
                http_status=resp.status_code,
                unused_fields=list(resp.unused_fields),
                request_id=resp.request_id,
                latency_s=latency,
                reconciled=bool(resp.replayed),
            )
            if resp.unused_fields:
                self.log.debug(f"Trackstar writer: {item.key!r} unused fields {resp.unused_fields}")
            return
