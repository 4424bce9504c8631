"""The reconcile step of a write run: settle an unknown outcome by looking the record up in Trackstar.

Adopt only on proof: a record found is this record only when it carries this record's tag (``keys``: the
sync's namespace, the action and the key). A record with the same ``reference_id`` but another tag, or none,
belongs to someone else (a re-issued order, a split shipment, another sync) and is never adopted. When no
record carries the tag, the body is sent again (same create ``Idempotency-Key``, bounded attempts); the
record ends ``failed`` with "outcome unknown" only when the look-ups themselves keep failing. Bodies without
the tag (``key_tag: false``) cannot be proven: they are re-sent with the same ``Idempotency-Key`` only.

``Reconciler`` is a collaborator of the run, built with what it needs (the run's ``Results``, its
``RetryPolicy`` and mode). The run calls it first for a record a ledger row left unknown (an intent, a
create without its id); the ``Sender`` calls it between re-sends of a create whose outcome was unknown.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..base.errors import TrackstarAuthError, TrackstarError, TrackstarValidationError
from ..base.keys import has_tag
from ..client.shared_budget import BudgetUnavailableError
from .lanes import Item, Lane, RetryPolicy
from .ledger_table import ENCODING
from .rebuild import held_matches, oldest
from .results import Results

BODY_CHANGED_MESSAGE = "body changed; not sent in create_only mode"


class Reconciler:
    """``lookup`` and ``reconcile`` of one run (see the module docstring)."""

    def __init__(self, results: Results, retry: RetryPolicy, *, mode: str, log: logging.Logger | Any) -> None:
        self.results = results
        self.retry = retry
        self.mode = mode
        self.log = log
        self._warned_no_lookup: set[str] = set()  # connections already warned of untagged bodies

    async def lookup(self, lane: Lane, item: Item) -> dict[str, Any] | None:
        """The record carrying this record's tag, or None (raises TrackstarError when the read fails).

        Searched by the tag (``trackstar_tags[contains]``); a server that refuses that filter is searched by
        ``reference_id`` where the body has one, and the tag checked here."""
        if not item.tags:
            if item.connection not in self._warned_no_lookup:
                self._warned_no_lookup.add(item.connection)
                self.log.warning(
                    f"Trackstar writer: {item.action} bodies of {item.connection!r} carry no key tag; an unknown "
                    f"outcome cannot be proven and is re-sent with the same Idempotency-Key only (a server that "
                    f"does not honour the key may then store it twice)"
                )
            return None
        spec = item.spec
        # this release's tag; the first release's too when the ledger row (or its absence) allows it
        legacy = item.entry is None or item.entry.encoding < ENCODING
        searches: list[dict[str, str]] = [
            {"trackstar_tags[contains]": t} for t in item.tags[: None if legacy else 1]
        ]
        found: dict[str, dict[str, Any]] = {}
        for search in searches:
            try:
                records = await lane.client.alist_records(spec.lookup_path, lane.token, filters=search)
            except TrackstarValidationError:
                # a server without the tag filter: search by the natural id, prove by the tag here
                by_id = spec.lookup_filters(item.body)
                if by_id is None:
                    raise
                records = await lane.client.alist_records(spec.lookup_path, lane.token, filters=by_id)
            for r in records:
                if has_tag(r, item.tags) and r.get("id") is not None:
                    found.setdefault(str(r["id"]), r)
            if found:
                break
        if not found:
            return None
        first = oldest(list(found.values()))
        if len(found) > 1:
            self.log.warning(
                f"Trackstar writer: {len(found)} {spec.resource} of {item.connection!r} carry the tag of key "
                f"{item.key!r} (stored more than once before); adopting the oldest, {first.get('id')!r}"
            )
        return first

    async def reconcile(self, lane: Lane, item: Item) -> bool:
        """Look the record up; adopt it when it is provably ours. Returns True when the record is finished
        (or handed back to the lane as an update); False: not there, send it."""
        waited = 0.0
        tries = 0
        while True:
            tries += 1
            try:
                found = await self.lookup(lane, item)
                break
            except (TrackstarAuthError, BudgetUnavailableError) as e:
                self.results.finish(
                    lane, item, "failed", error=self.results.stop(lane, e), http_status=e.status
                )
                return True
            except TrackstarError as e:
                if (
                    self.results.server_error(lane, e)
                    or tries >= self.retry.max_attempts
                    or waited > self.retry.max_wait_s
                ):
                    self.results.note_retry_after(e)
                    self.results.finish(
                        lane,
                        item,
                        "failed",
                        http_status=e.status,
                        origin=e.origin,
                        request_id=e.request_id,
                        error=f"outcome unknown: the request may have been stored, and the look-up failed: "
                        f"{lane.stop_reason or e}",
                    )
                    return True
                wait = e.retry_after or self.retry.backoff(tries)
                waited += wait
                await asyncio.sleep(wait)
        if found is None:
            return False
        record_id = str(found["id"])
        item.trackstar_id = record_id
        # ours for sure when it holds this body's values, or when the unknown request was this body's
        mine = (
            held_matches(found, item.body)
            or item.sent_unknown
            or (
                item.entry is not None
                and item.entry.status == "intent"
                and item.entry.body_hash == item.body_hash
            )
        )
        if mine:
            self.results.finish(lane, item, "created", trackstar_id=record_id, reconciled=True)
            return True
        # an earlier body of this record is there (held, not this run's body)
        self.results.note_held(item, record_id)
        if self.mode == "upsert" and item.spec.update is not None:
            item.operation = "update"
            item.unknown = False
            lane.requeue(item)
            return True
        self.results.finish(
            lane,
            item,
            "unchanged",
            ledger_status="none",
            trackstar_id=record_id,
            error=BODY_CHANGED_MESSAGE,
            body_changed=True,
            reconciled=True,
        )
        return True
