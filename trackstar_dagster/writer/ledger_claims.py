"""The ledger's claims: who is sending which key right now, so two runs never both send one key.

A writer claims its keys before it decides anything about them, atomically (``INSERT .. ON CONFLICT DO
UPDATE .. WHERE`` the row is free, ours, or expired, ``RETURNING`` the rows now ours). ``claim_owner`` and
``claim_expires`` live in the ledger's rows; expiry is on the database's clock, never a host's. A key
claimed by a live writer elsewhere is not touched; an expired claim is taken over (its row shows what the
dead writer left). Claims are renewed while held and released when the writer ends; a claims-only row
(status ``new``) of a key never sent is deleted on release.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from ..base.keys import key_id
from .ledger_db import LedgerDatabase
from .ledger_table import CHUNK, ENCODING, PK, TEXT_MAX, LedgerEntry, clean, insert, ledger_table


class ClaimBook:
    """Claims on the ledger's rows, in the ``LedgerDatabase`` it is given (the ``Ledger`` holds one)."""

    def __init__(self, db: LedgerDatabase) -> None:
        self.db = db

    def claim(
        self,
        namespace: str,
        connection: str,
        action: str,
        keys: Sequence[str],
        *,
        owner: str,
        run: str | None,
        ttl_s: float,
    ) -> dict[str, LedgerEntry]:
        """Claim keys atomically; returns key -> entry (fresh, under the claim) for those now ours.

        A key missing from the answer is claimed by a live writer elsewhere. An expired claim is taken over
        (its entry shows what the dead writer left: an ``intent`` means look the record up first).
        """
        t = ledger_table
        db = self.db
        by_id = {key_id(k): k for k in keys}
        now = datetime.now(UTC)
        out: dict[str, LedgerEntry] = {}
        ids = sorted(by_id)  # one order for every writer: no deadlock between two claiming the same keys
        with db.lock:
            for i in range(0, len(ids), CHUNK):
                rows = [
                    {
                        "namespace": namespace,
                        "connection": connection,
                        "action": action,
                        "key": kid,
                        "key_text": clean(by_id[kid]),
                        "generation": 0,
                        "encoding": ENCODING,
                        "status": "new",
                        "outcome_unknown": False,
                        "attempts": 0,
                        "updated_at": now,
                        "claim_owner": owner,
                        "claim_run": clean(run, TEXT_MAX),
                    }
                    for kid in ids[i : i + CHUNK]
                ]
                ins = insert(db.dialect).values(claim_expires=db.now() + ttl_s)
                stmt = ins.on_conflict_do_update(
                    index_elements=list(PK),
                    set_={
                        "claim_owner": ins.excluded.claim_owner,
                        "claim_run": ins.excluded.claim_run,
                        "claim_expires": db.now() + ttl_s,
                    },
                    where=sa.or_(
                        t.c.claim_owner.is_(None),
                        t.c.claim_owner == owner,
                        t.c.claim_expires < db.now(),
                    ),
                ).returning(*t.columns)
                with db.engine.begin() as conn:
                    for row in conn.execute(stmt, rows):
                        entry = LedgerEntry(**row._mapping)
                        out[by_id[entry.key]] = entry
        return out

    def renew(self, owner: str, ttl_s: float) -> int:
        """Extend every claim ``owner`` still holds; returns how many."""
        t = ledger_table
        with self.db.lock, self.db.engine.begin() as conn:
            return conn.execute(
                sa.update(t).where(t.c.claim_owner == owner).values(claim_expires=self.db.now() + ttl_s)
            ).rowcount

    def release(self, owner: str) -> int:
        """Give back every claim ``owner`` holds (claims-only rows of keys never sent are deleted)."""
        t = ledger_table
        with self.db.lock, self.db.engine.begin() as conn:
            gone = conn.execute(sa.delete(t).where(t.c.claim_owner == owner, t.c.status == "new")).rowcount
            return (
                gone
                + conn.execute(
                    sa.update(t)
                    .where(t.c.claim_owner == owner)
                    .values(claim_owner=None, claim_run=None, claim_expires=None)
                ).rowcount
            )

    def holder(
        self, namespace: str, connection: str, action: str, key: str
    ) -> tuple[str | None, float | None]:
        """(who holds the claim, seconds left on the database's clock) of one key."""
        t = ledger_table
        query = sa.select(t.c.claim_run, t.c.claim_expires - self.db.now()).where(
            t.c.namespace == namespace,
            t.c.connection == connection,
            t.c.action == action,
            t.c.key == key_id(key),
            t.c.claim_owner.is_not(None),
        )
        with self.db.engine.connect() as conn:
            row = conn.execute(query).first()
        return (row[0], float(row[1])) if row else (None, None)

    def listing(self, namespace: str | None = None) -> pd.DataFrame:
        """Live and expired claims, with seconds left on the database's clock (negative: expired)."""
        t = ledger_table
        query = sa.select(
            t.c.namespace,
            t.c.connection,
            t.c.action,
            t.c.key,
            t.c.claim_run,
            (t.c.claim_expires - self.db.now()).label("seconds_left"),
        ).where(t.c.claim_owner.is_not(None))
        if namespace is not None:
            query = query.where(t.c.namespace == namespace)
        with self.db.engine.connect() as conn:
            return pd.DataFrame([dict(r._mapping) for r in conn.execute(query)])
