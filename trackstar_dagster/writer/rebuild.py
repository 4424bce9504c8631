"""What Trackstar already holds of a sync's records, learnt from Trackstar itself by their tags.

A ledger can be lost (a container's throwaway disk, a new ``DAGSTER_HOME``) and a server may not replay
idempotency keys (24 h window, or not at all). Then only the tags tell which records exist: the writer lists
a connection's records (1,000 a page, within the client's read budget) before its first write when the
ledger has no history of that connection, and ``rebuild_ledger`` does the same by hand.

``Rebuilder`` is that step of a write run, for every connection the ledger knows nothing of: their listings
run at once (``LISTINGS_AT_ONCE`` at a time: each token has its own read budget, and one after another 300
connections took most of a run's write step), then each one's ledger rows are written in turn.
``held_matches`` decides whether a held record already has a body's values, so an ``upsert`` after a
rebuild updates only records that differ.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..base.errors import TrackstarAuthError, TrackstarError, TrackstarNotImplementedError
from ..base.keys import key_id, parse_tag, record_tags
from ..client.shared_budget import BudgetUnavailableError
from .actions import ActionSpec, spec_for
from .lanes import Item, Lane
from .ledger import Ledger
from .ledger_table import Held
from .results import Results

#: listings of connections the ledger knows nothing of that run at once (each token has its own read budget)
LISTINGS_AT_ONCE = 16


def _same(held: Any, sent: Any) -> bool:
    if isinstance(sent, bool) or isinstance(held, bool):
        return held is sent
    if isinstance(sent, int | float) and isinstance(held, int | float):
        return math.isclose(float(held), float(sent), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(sent, Mapping):
        return isinstance(held, Mapping) and all(k in held and _same(held[k], v) for k, v in sent.items())
    if isinstance(sent, list):
        return isinstance(held, list) and len(held) == len(sent) and all(map(_same, held, sent))
    return held == sent


def held_matches(record: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    """True when the record Trackstar holds has every value of ``body`` (extra fields of the record, such as
    ``id`` or ``status``, do not matter; tags only need to be present)."""
    for name, value in body.items():
        if name == "trackstar_tags":
            wanted = record_tags({"trackstar_tags": value})
            if not wanted <= record_tags(record):
                return False
            continue
        if name not in record or not _same(record[name], value):
            return False
    return True


def oldest(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Of several records carrying one tag (stored more than once before), the one to adopt: the first made."""
    return min(records, key=lambda r: str(r.get("trackstar_created_date") or r.get("created_date") or ""))


def _filters(since: str | None) -> dict[str, str] | None:
    return {"trackstar_created_date[gte]": since} if since else None


async def find_tagged(
    client: Any, spec: ActionSpec, token: str, wanted: Iterable[str], since: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Tag -> the records carrying it, for the ``wanted`` tags, from one listing of the connection's records
    (``since``: an ISO date-time bounding ``trackstar_created_date``)."""
    wanted = set(wanted)
    found: dict[str, list[dict[str, Any]]] = {}
    for record in await client.alist_records(spec.lookup_path, token, filters=_filters(since), limit=1000):
        for tag in record_tags(record) & wanted:
            found.setdefault(tag, []).append(record)
    return found


def rebuild_ledger(
    client: Any,
    ledger: Ledger,
    *,
    namespace: str,
    connection: str,
    token: str,
    action: str = "create_order",
    since: str | None = None,
) -> int:
    """By hand, after a lost ledger: every record of the connection carrying one of ``namespace``'s tags
    becomes a ``created`` ledger row (its body not yet verified: the next ``upsert`` run compares it).
    Rows that already know their Trackstar id are left alone. Returns the rows written."""
    spec = spec_for(action)
    held: dict[str, Held] = {}
    for record in client.iter_records(spec.lookup_path, token, filters=_filters(since), limit=1000):
        for tag in record_tags(record):
            parsed = parse_tag(tag, namespace)
            if parsed is None or parsed[0] != action or record.get("id") is None:
                continue
            kid = parsed[1]
            if kid not in held:  # the first (oldest) record of a key wins, as in the writer
                held[kid] = Held(connection, action, kid, str(record["id"]))
    return ledger.record_held(namespace, list(held.values()))


class Rebuilder:
    """Before a run's first write: learn what Trackstar holds of the (connection, action) groups the ledger
    knows nothing of (see the module docstring). A listing that fails does to its connection only what it
    always did: 401 or a shared budget that cannot be reached stops it, 403/501 leave nothing to learn
    (warned), anything else stops it (sending blind could store its records twice)."""

    def __init__(
        self,
        ledger: Ledger,
        results: Results,
        *,
        namespace: str,
        since: str | None,
        log: logging.Logger | Any,
    ) -> None:
        self.ledger = ledger
        self.results = results
        self.namespace = namespace
        self.since = since
        self.log = log
        self.rebuilt: dict[str, int] = {}  # connection -> ledger rows learnt from Trackstar

    async def rebuild(self, groups: list[tuple[Lane, list[Item]]]) -> None:
        """List every group's records, ``LISTINGS_AT_ONCE`` at a time, then record what each one holds."""
        gate = asyncio.Semaphore(LISTINGS_AT_ONCE)

        async def listed(
            lane: Lane, items: list[Item]
        ) -> tuple[dict[str, list[dict[str, Any]]] | None, float]:
            async with gate:
                started = time.monotonic()
                return await self.listing(lane, items), time.monotonic() - started

        tasks = [asyncio.ensure_future(listed(lane, items)) for lane, items in groups]
        try:
            answers = await asyncio.gather(*tasks)
        finally:  # one raised (a bug, or the run is cancelled): the others stop too
            for task in tasks:
                task.cancel()
        for (lane, items), (found, took) in zip(groups, answers, strict=True):
            if found is not None:
                await self.learn(lane, items, found, took)

    async def listing(self, lane: Lane, items: list[Item]) -> dict[str, list[dict[str, Any]]] | None:
        """Tag -> the records of the connection carrying it (one listing), or None: nothing to learn."""
        spec = items[0].spec
        try:
            return await find_tagged(
                lane.client, spec, lane.token, {t for i in items for t in i.tags}, self.since
            )
        except (TrackstarNotImplementedError, TrackstarAuthError, BudgetUnavailableError) as e:
            if e.status == 401 or isinstance(e, BudgetUnavailableError):
                self.results.stop(lane, e)
                return None
            # this connection cannot list (501) or read (403) its records: nothing to learn, nothing to prove
            self.log.warning(
                f"Trackstar writer: {lane.connection!r} cannot list its {spec.resource} ({e.status}); "
                f"a lost ledger cannot be rebuilt for it: exactly once rests on the ledger and on "
                f"Trackstar honouring Idempotency-Key"
            )
            return None
        except TrackstarError as e:
            # cannot learn: sending blind could duplicate what a lost ledger had written
            self.results.stop_lane(
                lane,
                (
                    f"{lane.connection}: could not list its {spec.resource} to learn what Trackstar "
                    f"already holds (the ledger has no history of it): {e}; its records were not sent "
                    f"(sending blind could store them twice)"
                ),
            )
            return None

    async def learn(
        self, lane: Lane, items: list[Item], found: dict[str, list[dict[str, Any]]], took: float
    ) -> None:
        """What the listing found becomes ledger rows: those records are not sent again."""
        by_tag = {t: item for item in items for t in item.tags}
        spec = items[0].spec
        held: dict[str, Held] = {}
        for tag, records in found.items():
            item = by_tag[tag]
            if item.key in held:
                continue
            record = oldest(records)
            if len(records) > 1:
                self.log.warning(
                    f"Trackstar writer: {len(records)} {spec.resource} of {lane.connection!r} carry the "
                    f"tag of key {item.key!r}; adopting the oldest, {record.get('id')!r}"
                )
            written = item.body_hash if held_matches(record, item.body) else None
            held[item.key] = Held(
                item.connection, item.action, key_id(item.key), str(record["id"]), written, item.key
            )
        n = await asyncio.to_thread(self.ledger.record_held, self.namespace, list(held.values()))
        self.rebuilt[lane.connection] = self.rebuilt.get(lane.connection, 0) + n
        say = self.log.warning if held else self.log.info
        say(
            f"Trackstar writer: the ledger had no history of {lane.connection!r} ({spec.resource}); listed what "
            f"Trackstar holds in {took:.1f} s: {len(held)} of {len(items)} records of this "
            f"run are already there and will not be sent again"
        )
