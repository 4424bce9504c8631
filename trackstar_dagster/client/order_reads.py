"""Reading orders back: by Trackstar id (``ids[in]``, at most 100 a request) or by what changed in Trackstar's
copy after a time (``trackstar_updated_date[gt]``), page after page.

Why these two and nothing else: ``ids[in]`` is the only way to ask for exactly the orders a sync wrote, but it
ignores every other filter and takes at most 100 ids; ``trackstar_updated_date`` is Trackstar's clock (when its
copy changed), the one an incremental read can trust, where ``updated_date`` is the source system's and may lag
or jump. Every request goes through the client's read path: retried on 429/5xx/transport errors and held to
the per-token read budget (10/s), shared with every other read of that token.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from trackstar_dagster.base.timestamps import parse_timestamp
from trackstar_dagster.client.calls import TrackstarClient

__all__ = [
    "MAX_IDS",
    "ORDERS_PATH",
    "iter_orders_by_ids",
    "iter_orders_changed_since",
    "timestamp",
    "trackstar_updated_at",
]

ORDERS_PATH = "/wms/orders"
#: ``ids[in]`` takes at most this many ids (more is a 422)
MAX_IDS = 100


def _batches(ids: Iterable[str], size: int) -> Iterator[list[str]]:
    seen: set[str] = set()
    batch: list[str] = []
    for i in ids:
        if not i or i in seen:
            continue
        seen.add(i)
        batch.append(i)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def iter_orders_by_ids(
    client: TrackstarClient,
    access_token: str,
    ids: Iterable[str],
    *,
    path: str = ORDERS_PATH,
    batch_size: int = MAX_IDS,
) -> Iterator[dict[str, Any]]:
    """The orders with these Trackstar ids (duplicates and empty ids skipped), ``batch_size`` (<= 100) a request.
    Ids Trackstar does not hold are simply not in the answer."""
    if not 1 <= batch_size <= MAX_IDS:
        raise ValueError(f"batch_size must be between 1 and {MAX_IDS} (ids[in] takes at most {MAX_IDS})")
    for batch in _batches(ids, batch_size):
        yield from client.iter_records(path, access_token, {"ids[in]": ",".join(batch)})


def iter_orders_changed_since(
    client: TrackstarClient,
    access_token: str,
    since: datetime,
    *,
    until: datetime | None = None,
    filters: Mapping[str, Any] | None = None,
    path: str = ORDERS_PATH,
    limit: int = 1000,
) -> Iterator[dict[str, Any]]:
    """Orders whose copy in Trackstar changed after ``since`` (and at or before ``until``), every page.

    The bounds go out to the microsecond, as Trackstar writes its own timestamps: a mark taken from a record's
    ``trackstar_updated_date`` comes back as it was read (callers start a little earlier to re-read an overlap).
    """
    params: dict[str, Any] = {**(filters or {}), "trackstar_updated_date[gt]": timestamp(since)}
    if until is not None:
        params["trackstar_updated_date[lte]"] = timestamp(until)
    yield from client.iter_records(path, access_token, params, limit)


def trackstar_updated_at(record: Mapping[str, Any]) -> datetime | None:
    """When Trackstar's copy of a record last changed (``trackstar_updated_date``), None when it is not given."""
    dt = parse_timestamp(record.get("trackstar_updated_date"))
    return None if dt is None else _utc(dt)


def timestamp(dt: datetime) -> str:
    """A filter bound as Trackstar writes timestamps: UTC, microseconds, a trailing ``Z``."""
    return _utc(dt).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
