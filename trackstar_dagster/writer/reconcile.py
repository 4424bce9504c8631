"""The reconcile step of a write run: look a record up in Trackstar and adopt it when an earlier try made it.

Split out of ``writer.py`` (the run engine: planning, lanes, pacing, sending, reporting) because settling an
unknown outcome is a job of its own: find the record by ``reference_id`` or by the key tag in
``trackstar_tags``, then decide whether it is this run's write, an earlier body (re-sent as an update in
``upsert`` mode) or nothing (sent again). ``_Reconcile`` is a mixin of the writer's ``_Run``; it uses the
run's state and helpers (declared below) and imports nothing from ``writer.py`` at run time.
``BODY_CHANGED_MESSAGE`` lives here as both this step and the planner report it; ``writer.py`` re-exports it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ..errors import TrackstarAuthError, TrackstarError
from .keys import _has_tag, key_tag
from .ledger import Outcome

if TYPE_CHECKING:
    from .writer import _Item, _Lane

BODY_CHANGED_MESSAGE = "body changed; not sent in create_only mode"


class _Reconcile:
    """``lookup`` and ``reconcile`` of ``_Run`` (see the module docstring)."""

    # provided by _Run
    mode: str
    max_attempts: int
    max_wait_s: float
    log: logging.Logger | Any
    outcomes: list[Outcome]
    _warned_no_lookup: set[str]

    if TYPE_CHECKING:
        def _finish(self, lane: _Lane, item: _Item, status: str, *, ledger_status: str | None = None,
                    **values: Any) -> None: ...
        def _stop(self, lane: _Lane, err: TrackstarError) -> str: ...
        def _backoff(self, attempt: int) -> float: ...
        def _note_retry_after(self, err: TrackstarError) -> None: ...

    async def lookup(self, lane: _Lane, item: _Item) -> dict[str, Any] | None:
        """Find the record an earlier attempt may have created (raises TrackstarError when the read fails)."""
        spec = item.spec
        filters = spec.lookup_filters(item.body)
        tag = key_tag(item.connection, item.action, item.key)
        if filters is None:
            if not _has_tag(item.body, tag):
                if item.connection not in self._warned_no_lookup:
                    self._warned_no_lookup.add(item.connection)
                    self.log.warning(
                        f"Trackstar writer: {item.action} bodies of {item.connection!r} carry neither a look-up "
                        f"field nor the key tag; unknown outcomes are re-sent with the same idempotency key only"
                    )
                return None
            filters = {"trackstar_tags[contains]": tag}
        records = await lane.client.alist_records(spec.lookup_path, lane.token, filters=filters)
        if "trackstar_tags[contains]" in filters:
            records = [r for r in records if _has_tag(r, tag)]
        if not records:
            return None
        tagged = [r for r in records if _has_tag(r, tag)] or records
        if len(records) > 1:
            self.log.warning(
                f"Trackstar writer: {len(records)} {spec.resource} match key {item.key!r} of {item.connection!r}; "
                f"adopting {tagged[0].get('id')!r}"
            )
        return tagged[0]

    async def reconcile(self, lane: _Lane, item: _Item) -> bool:
        """Look the record up; adopt it when found. Returns True when the record is finished."""
        waited = 0.0
        tries = 0
        while True:
            tries += 1
            try:
                found = await self.lookup(lane, item)
                break
            except TrackstarAuthError as e:
                self._finish(lane, item, "failed", error=self._stop(lane, e), http_status=e.status)
                return True
            except TrackstarError as e:
                if tries >= self.max_attempts or waited > self.max_wait_s:
                    self._note_retry_after(e)
                    self._finish(
                        lane, item, "failed", http_status=e.status, origin=e.origin, request_id=e.request_id,
                        error=f"outcome unknown and the look-up failed: {e}",
                    )
                    return True
                wait = e.retry_after or self._backoff(tries)
                waited += wait
                await asyncio.sleep(wait)
        if found is None:
            return False
        record_id = str(found.get("id")) if found.get("id") is not None else None
        item.trackstar_id = record_id
        written_hash = item.entry.body_hash if (item.entry and not item.attempts) else item.body_hash
        if written_hash != item.body_hash and item.entry is not None:
            # an earlier run's body is there; this run's body differs
            self.outcomes.append(
                Outcome(item.connection, item.action, item.key, "created", body_hash=written_hash,
                        trackstar_id=record_id)
            )
            if self.mode == "upsert" and item.spec.update is not None:
                item.operation = "update"
                item.unknown = False
                item.stage = "send"
                lane.pending.appendleft(item)
                lane.wake.set()
                return True  # not finished, but handed back to the lane
            self._finish(
                lane, item, "unchanged", ledger_status="none", trackstar_id=record_id,
                error=BODY_CHANGED_MESSAGE, body_changed=True, reconciled=True,
            )
            return True
        self._finish(lane, item, "created", trackstar_id=record_id, reconciled=True)
        return True
