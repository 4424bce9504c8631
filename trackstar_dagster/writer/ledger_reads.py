"""What a sync has in Trackstar, read from the ledger: (connection, key, Trackstar id) of its records.

Why a reading of its own: reading statuses back starts from exactly the records a sync wrote, and the ledger
is where that is known for sure (the ids Trackstar answered with), without listing Trackstar by tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from .ledger import Ledger
from .ledger_table import ledger_table

__all__ = ["WrittenRecord", "written_records"]


@dataclass(frozen=True)
class WrittenRecord:
    """One record a sync has in Trackstar."""

    connection: str
    action: str
    key: str  # the key's text (the record's key columns, encoded)
    trackstar_id: str
    updated_at: datetime | None = None  # when its ledger row last changed (UTC, the writer's clock)


def written_records(
    ledger: Ledger,
    namespace: str,
    connections: Sequence[str] | None = None,
    action: str | None = None,
) -> list[WrittenRecord]:
    """The records of ``namespace`` (a sync's name) with a Trackstar id, of some connections and one action or
    all, ordered by connection and key. Records never created (failed, rejected, only claimed) have none."""
    t = ledger_table
    columns = (t.c.connection, t.c.action, t.c.key, t.c.key_text, t.c.trackstar_id, t.c.updated_at)
    query = sa.select(*columns).where(t.c.namespace == namespace, t.c.trackstar_id.is_not(None))
    if connections is not None:
        query = query.where(t.c.connection.in_(list(connections)))
    if action is not None:
        query = query.where(t.c.action == action)
    with ledger.engine.connect() as conn:
        rows = conn.execute(query.order_by(t.c.connection, t.c.key)).all()
    return [
        WrittenRecord(r.connection, r.action, r.key_text or r.key, r.trackstar_id, _utc(r.updated_at))
        for r in rows
        if r.trackstar_id
    ]


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands naive datetimes back; the ledger writes UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
