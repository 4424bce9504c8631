"""What Trackstar already holds of a sync's records, learnt from Trackstar itself by their tags.

A ledger can be lost (a container's throwaway disk, a new ``DAGSTER_HOME``) and a server may not replay
idempotency keys (24 h window, or not at all). Then only the tags tell which records exist: the writer lists
a connection's records (1,000 a page, within the client's read budget) before its first write when the
ledger has no history of that connection, and ``rebuild_ledger`` does the same by hand.

``held_matches`` decides whether a held record already has a body's values, so an ``upsert`` after a
rebuild updates only records that differ.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ..base.keys import parse_tag, record_tags
from .actions import ActionSpec, spec_for
from .ledger import Ledger
from .ledger_table import Held


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
