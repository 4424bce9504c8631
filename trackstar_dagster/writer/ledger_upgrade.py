"""From the first release's ledger to this one, without re-sending anything already written.

The first release kept one table, ``trackstar_write_ledger``, keyed by (connection, action, key) and hashing
bodies that carried its own tags. On open, that table is copied into this release's table under the empty
namespace with ``encoding`` 1, then dropped (``copy_first_release``). A run moves such rows into its own
namespace when it meets their keys (``adopt_legacy_rows``) and, once it has proven Trackstar holds the same
body, stores this release's hash of it (``migrate_hashes``). The ``Ledger`` owns the transactions; these
functions are the statements, run on the connection it gives them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..base.keys import key_id
from .ledger_table import CHUNK, ENCODING, LEGACY_NAMESPACE, LEGACY_TABLE, PK, clean, insert, ledger_table


def has_first_release_table(bind: Engine | Connection) -> bool:
    return LEGACY_TABLE in sa.inspect(bind).get_table_names()


def first_release_table(engine: Engine) -> sa.Table:
    """The first release's table as it is on disk (its columns are read from the database)."""
    return sa.Table(LEGACY_TABLE, sa.MetaData(), autoload_with=engine)


def copy_first_release(conn: Connection, old: sa.Table, dialect: str) -> None:
    """Copy the first release's table into this one (empty namespace, encoding 1), then drop it."""
    if not has_first_release_table(conn):
        return  # another process migrated it meanwhile
    rows = [dict(r._mapping) for r in conn.execute(sa.select(old))]
    moved = []
    for r in rows:
        moved.append(
            {
                "namespace": LEGACY_NAMESPACE,
                "connection": r["connection"],
                "action": r["action"],
                "key": key_id(r["key"]),
                "key_text": clean(r["key"]),
                "generation": 0,
                "body_hash": r["body_hash"],
                "written_hash": r["written_hash"],
                "encoding": 1,
                "trackstar_id": r["trackstar_id"],
                "status": r["status"],
                "operation": r["operation"],
                "idempotency_key": r["idempotency_key"],
                "outcome_unknown": bool(r["outcome_unknown"]),
                "attempts": r["attempts"] or 0,
                "http_status": r["http_status"],
                "request_id": r["request_id"],
                "last_error": clean(r["last_error"]),
                "last_attempt_at": r["last_attempt_at"],
                "updated_at": r["updated_at"],
                "claim_owner": None,
                "claim_run": None,
                "claim_expires": None,
            }
        )
    for i in range(0, len(moved), CHUNK):
        conn.execute(insert(dialect).on_conflict_do_nothing(index_elements=list(PK)), moved[i : i + CHUNK])
    old.drop(conn)


def has_legacy_rows(conn: Connection, connection: str, action: str) -> bool:
    """True while first-release rows of this connection and action are left (one cheap query)."""
    t = ledger_table
    return (
        conn.execute(
            sa.select(t.c.key)
            .where(t.c.namespace == LEGACY_NAMESPACE, t.c.connection == connection, t.c.action == action)
            .limit(1)
        ).first()
        is not None
    )


def adopt_legacy_rows(
    conn: Connection, dialect: str, namespace: str, connection: str, action: str, kids: Sequence[str]
) -> int:
    """Move first-release rows of these key ids into ``namespace`` (a row the namespace already has wins);
    returns how many were moved."""
    t = ledger_table
    moved = 0
    for i in range(0, len(kids), CHUNK):
        chunk = list(kids[i : i + CHUNK])
        where = (
            t.c.namespace == LEGACY_NAMESPACE,
            t.c.connection == connection,
            t.c.action == action,
            t.c.key.in_(chunk),
        )
        rows: list[dict[str, Any]] = [dict(r._mapping) for r in conn.execute(sa.select(t).where(*where))]
        if not rows:
            continue
        for r in rows:
            r["namespace"] = namespace
        conn.execute(insert(dialect).on_conflict_do_nothing(index_elements=list(PK)), rows)
        moved += conn.execute(sa.delete(t).where(*where)).rowcount
    return moved


def migrate_hashes(
    conn: Connection, namespace: str, connection: str, action: str, hashes: dict[str, str]
) -> None:
    """Key id -> this release's hash of the body Trackstar holds (proven equal to an older encoding's)."""
    t = ledger_table
    stmt = (
        sa.update(t)
        .where(
            t.c.namespace == namespace,
            t.c.connection == connection,
            t.c.action == action,
            t.c.key == sa.bindparam("k"),
        )
        .values(written_hash=sa.bindparam("h"), body_hash=sa.bindparam("h"), encoding=ENCODING)
    )
    conn.execute(stmt, [{"k": k, "h": h} for k, h in hashes.items()])
