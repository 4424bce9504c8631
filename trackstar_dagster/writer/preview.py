"""A dry run's preview of changes: what Trackstar holds for each changed record, read by id, diffed with the body.

Why read by id rather than keep a copy of what was last sent: the read is the truth (it sees edits made in
Trackstar by others and records deleted there), the ledger keeps its table (hashes only, no migration) and no
body is stored per record. The price is one read per record (10 reads/s per token): reads are capped per run
(``limit``); the rest are counted as not previewed. Connections are read side by side (each token has its own
read budget, which the client keeps); a failed read marks its record, never fails the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd

from trackstar_dagster.base.errors import TrackstarAuthError, TrackstarError, TrackstarNotFoundError
from trackstar_dagster.base.redaction import redacted_logger
from trackstar_dagster.client.calls import TrackstarClient
from trackstar_dagster.writer.actions import spec_for
from trackstar_dagster.writer.field_diff import FieldChange, field_changes
from trackstar_dagster.writer.ledger import Ledger

log = redacted_logger(__name__)

#: what ``preview`` says of a record: its fields read and diffed; deleted in Trackstar (404); over the
#: run's ``limit``; the read failed (the message is logged once per connection)
PREVIEWED, MISSING, NOT_PREVIEWED, READ_FAILED = "previewed", "missing", "not_previewed", "read_failed"
DEFAULT_PREVIEW_LIMIT = 200
CONNECTIONS_AT_ONCE = 8


@dataclass(frozen=True)
class RecordPreview:
    """One changed record's preview: its status and, when previewed, the fields that would change."""

    status: str
    changes: tuple[FieldChange, ...] | None = None

    def changes_json(self) -> str | None:
        """The changes as JSON text (a results frame's ``changes`` cell), None when not previewed."""
        if self.changes is None:
            return None
        return json.dumps([c.as_dict() for c in self.changes], ensure_ascii=False, default=str)


class ChangePreview:
    """Previews the changed records of one run, at most ``limit`` reads in all (across its groups)."""

    def __init__(
        self,
        client: TrackstarClient,
        token_for: Callable[[str], str],
        *,
        limit: int = DEFAULT_PREVIEW_LIMIT,
        namespace: str = "",
    ) -> None:
        self.client = client
        self.token_for = token_for
        self.remaining = max(0, int(limit))
        self.limit = max(0, int(limit))
        self.namespace = namespace

    def __repr__(self) -> str:
        return f"ChangePreview(limit={self.limit}, remaining={self.remaining})"

    def frame_columns(self, dry: pd.DataFrame, would: Sequence[str], ledger: Ledger) -> dict[str, list]:
        """``preview`` and ``changes`` columns for dry result rows: set for the ``changed`` ones, else None."""
        previews = self.preview(dry, [i for i, w in enumerate(would) if w == "changed"], ledger)
        status: list[str | None] = [None] * len(dry)
        changes: list[str | None] = [None] * len(dry)
        for i, p in previews.items():
            status[i], changes[i] = p.status, p.changes_json()
        return {"preview": status, "changes": changes}

    def preview(self, dry: pd.DataFrame, rows: Sequence[int], ledger: Ledger) -> dict[int, RecordPreview]:
        """Per row position of ``dry`` (columns connection, action, key, body): the preview of that record.

        The first rows up to the run's remaining reads are read; the others are ``not_previewed``."""
        read_now, later = list(rows[: self.remaining]), rows[self.remaining :]
        self.remaining -= len(read_now)
        out = {i: RecordPreview(NOT_PREVIEWED) for i in later}
        if not read_now:
            return out
        conns, actions, keys, bodies = (
            dry[c].astype(str).tolist() for c in ("connection", "action", "key", "body")
        )
        found = ledger.load(((conns[i], actions[i], keys[i]) for i in read_now), self.namespace)
        per_connection: dict[str, list[tuple[int, str]]] = {}
        for i in read_now:
            entry = found.get((conns[i], actions[i], keys[i]))
            if entry is None or not entry.trackstar_id:
                out[i] = RecordPreview(MISSING)  # the ledger no longer knows it (forgotten meanwhile)
                continue
            per_connection.setdefault(conns[i], []).append((i, entry.trackstar_id))

        def read_connection(conn: str) -> dict[int, RecordPreview]:
            return self._read_connection(conn, per_connection[conn], actions, bodies)

        workers = max(1, min(CONNECTIONS_AT_ONCE, len(per_connection)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="trackstar-preview") as pool:
            for part in pool.map(read_connection, sorted(per_connection)):
                out.update(part)
        return out

    def _read_connection(
        self, conn: str, items: list[tuple[int, str]], actions: list[str], bodies: list[str]
    ) -> dict[int, RecordPreview]:
        """One connection's records, read one after another (its token's read budget paces them)."""
        out: dict[int, RecordPreview] = {}
        try:
            token = self.token_for(conn)
        except Exception as e:  # a connection whose token cannot be read: its records are not previewed
            log.warning("preview: connection %s: %s", conn, e)
            return {i: RecordPreview(READ_FAILED) for i, _ in items}
        failed: str | None = None
        for i, trackstar_id in items:
            if failed is not None:  # auth refused: every read of this token would be
                out[i] = RecordPreview(READ_FAILED)
                continue
            try:
                held = self.client.get_record(spec_for(actions[i]).resource_path, trackstar_id, token)
            except TrackstarNotFoundError:
                out[i] = RecordPreview(MISSING)
                continue
            except TrackstarError as e:
                log.warning("preview: connection %s: reading %s failed: %s", conn, trackstar_id, e)
                out[i] = RecordPreview(READ_FAILED)
                if isinstance(e, TrackstarAuthError):
                    failed = str(e)
                continue
            out[i] = RecordPreview(PREVIEWED, tuple(field_changes(json.loads(bodies[i]), held)))
        return out
