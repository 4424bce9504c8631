"""Before anything is sent: the payloads frame read into items, their keys claimed, and each record decided.

Per (connection, action) group: first-release ledger rows of these keys are adopted into the sync's
namespace; when the ledger has no history of the connection (a lost ledger), what Trackstar holds is listed
and matched by tag (``rebuild``); then the keys are claimed. A key another live run holds is
``in_flight_elsewhere``; a record whose ledger row says Trackstar holds this body is ``unchanged``; a changed
body is an update (``upsert``) or reported (``create_only``); an unknown earlier outcome is looked up first
(stage ``reconcile``); everything else is sent. Only what is left goes to the lanes.

Decision on a changed body in ``create_only`` mode: status ``unchanged`` (nothing was sent, Trackstar holds
the old body), ``error`` = "body changed; not sent in create_only mode" and ``body_changed`` = True, so it
is visible without counting as a failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson
import pandas as pd

from ..base.keys import has_tag, key_id, key_problem, legacy_key_tag, tags_of
from ..client.shared_budget import BudgetUnavailableError
from .actions import spec_for
from .lanes import Item, Lane
from .ledger import Ledger
from .ledger_table import ENCODING, LedgerEntry
from .rebuild import Rebuilder, held_matches
from .reconcile import BODY_CHANGED_MESSAGE
from .results import Results

Mode = Literal["create_only", "upsert"]
MODES = ("create_only", "upsert")


def body_text(body: Any) -> str:
    """The body's JSON text, as hashed and as sent: a text body as given, else compact sorted JSON."""
    return body if isinstance(body, str) else json.dumps(body, sort_keys=True, separators=(",", ":"))


def decode_body(text: str) -> Any:
    """The body as the writer reads it (tags, look-up fields, comparisons); ValueError when not JSON."""
    return json.loads(text)


def _json_variants(text: str) -> set[str]:
    return {json.dumps(text), json.dumps(text, ensure_ascii=False), orjson.dumps(text).decode()}


_WHOLE_SECOND = re.compile(r'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)Z"')


def legacy_body_hashes(item: Item) -> set[str]:
    """The hashes the first release may have given this body's text: its tag without a namespace, and its
    whole-second date-times written with six zero digits (it chose the unit per batch of rows)."""
    texts = {item.text}
    if item.tag is not None:
        old = legacy_key_tag(item.action, item.key)
        texts |= {
            item.text.replace(new, old_text, 1)
            for new in _json_variants(item.tag)
            if new in item.text
            for old_text in _json_variants(old)
        }
    texts |= {_WHOLE_SECOND.sub(r'\1.000000Z"', t) for t in texts}
    texts.discard(item.text)
    return {hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts}


class Planner:
    """Reads, claims and decides a run's records (see the module docstring); ``plan`` returns what to send."""

    def __init__(
        self,
        ledger: Ledger,
        results: Results,
        lane: Callable[[str], Lane],
        *,
        tokens: Mapping[str, str],
        clients: Any,
        mode: str,
        namespace: str,
        tag_namespace: str | None,
        owner: str,
        run_label: str | None,
        rebuild: str,
        rebuild_since: str | None,
        claim_ttl_s: float,
        log: logging.Logger | Any,
    ) -> None:
        self.ledger = ledger
        self.results = results
        self.lane = lane
        self.tokens = tokens
        self.clients = clients
        self.mode = mode
        self.namespace = namespace
        self.tag_namespace = tag_namespace
        self.owner = owner
        self.run_label = run_label
        self.rebuild = rebuild
        self.rebuild_since = rebuild_since
        self.claim_ttl_s = claim_ttl_s
        self.log = log
        self.rebuilder = Rebuilder(ledger, results, namespace=namespace, since=rebuild_since, log=log)
        # (connection, action) -> key id -> new hash
        self.migrated: dict[tuple[str, str], dict[str, str]] = {}

    def parse(self, frame: pd.DataFrame) -> list[Item]:
        """The frame's records as items; records that cannot be sent at all get their row here."""
        missing = {"key", "connection", "action", "body"} - set(frame.columns)
        if missing:
            raise ValueError(f"payloads frame lacks columns {sorted(missing)}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        keys = frame["key"].astype(str).tolist()
        connections = frame["connection"].astype(str).tolist()
        actions = frame["action"].astype(str).tolist()
        ids = list(zip(connections, actions, keys, strict=True))
        if len(set(ids)) != len(ids):
            dupes = pd.Series(ids)[pd.Series(ids).duplicated()].head(5).tolist()
            raise ValueError(f"payloads have duplicate (connection, action, key): {dupes}")
        bodies = frame["body"].tolist()
        hashes = frame["body_hash"].tolist() if "body_hash" in frame.columns else [None] * len(frame)
        given_tags = frame["tag"].tolist() if "tag" in frame.columns else None
        row = self.results.row
        self.results.start(len(ids))
        items: list[Item] = []
        for idx, ((connection, action, key), body, body_hash) in enumerate(
            zip(ids, bodies, hashes, strict=True)
        ):
            problem = key_problem(key)
            if problem:
                row(idx, key, connection, action, "rejected", error=problem)
                continue
            text = body_text(body)
            content = text.encode("utf-8")
            body_hash = str(body_hash) if body_hash else hashlib.sha256(content).hexdigest()
            try:
                parsed = decode_body(text)
            except ValueError as e:
                row(idx, key, connection, action, "rejected", error=f"body is not JSON: {e}")
                continue
            if not isinstance(parsed, dict):
                row(idx, key, connection, action, "rejected", error="body is not a JSON object")
                continue
            if connection not in self.tokens or (
                isinstance(self.clients, Mapping) and connection not in self.clients
            ):
                reason = f"no access token (or client) for connection {connection!r}"
                self.results.stopped.setdefault(connection, reason)
                row(idx, key, connection, action, "failed", error=reason)
                continue
            try:
                spec = spec_for(action)
            except KeyError as e:
                row(idx, key, connection, action, "rejected", error=str(e.args[0]))
                continue
            proofs = tags_of(action, key, self.tag_namespace)
            if given_tags is not None:
                tag = given_tags[idx] if isinstance(given_tags[idx], str) and given_tags[idx] else None
            else:
                tag = next((t for t in proofs if has_tag(parsed, t)), None)
            tags = tuple(dict.fromkeys([tag, *proofs])) if tag else ()
            items.append(
                Item(
                    idx,
                    key,
                    connection,
                    action,
                    parsed,
                    body_hash,
                    spec,
                    None,
                    "create",
                    "send",
                    text=text,
                    content=content,
                    tag=tag,
                    tags=tags,
                )
            )
        return items

    async def plan(self, frame: pd.DataFrame) -> list[Item]:
        """Claim every record's key, learn what Trackstar holds where the ledger knows nothing, and decide
        per record: unchanged, update, reconcile first, send, or in flight elsewhere. Hashes of bodies
        proven equal to a first-release encoding are then moved to this release's."""
        groups: dict[tuple[str, str], list[Item]] = {}
        for item in self.parse(frame):
            groups.setdefault((item.connection, item.action), []).append(item)
        ready: list[Item] = []
        unknown: list[tuple[Lane, list[Item]]] = []  # groups the ledger knows nothing of: list them first
        for (connection, action), items in groups.items():
            await asyncio.to_thread(
                self.ledger.adopt_legacy, self.namespace, connection, action, [key_id(i.key) for i in items]
            )
            if await self._should_rebuild(connection, action, items):
                unknown.append((self.lane(connection), items))
        await self.rebuilder.rebuild(unknown)
        for (connection, action), items in groups.items():
            lane = self.lane(connection)
            keys = [i.key for i in items]
            claimed = await asyncio.to_thread(
                self.ledger.claim,
                self.namespace,
                connection,
                action,
                keys,
                owner=self.owner,
                run=self.run_label,
                ttl_s=self.claim_ttl_s,
            )
            unverified: list[Item] = []
            for item in items:
                entry = claimed.get(item.key)
                if entry is None:
                    self.in_flight_elsewhere(item)
                    continue
                decided = self._decide(item, entry, unverified)
                if not decided:
                    ready.append(item)
            if unverified:
                ready += await self._verify_held(lane, unverified)
        for (connection, action), hashes in self.migrated.items():
            await asyncio.to_thread(self.ledger.migrate_hashes, self.namespace, connection, action, hashes)
        return ready

    async def _should_rebuild(self, connection: str, action: str, items: list[Item]) -> bool:
        if self.rebuild == "never" or not any(i.tags for i in items):
            return False
        if self.rebuild == "always":
            return True
        return not await asyncio.to_thread(self.ledger.has_history, self.namespace, connection, action)

    def in_flight_elsewhere(self, item: Item) -> None:
        """Another live run holds this key's claim: not sent; the run is retryable after that claim."""
        run, left = self.ledger.holder(self.namespace, item.connection, item.action, item.key)
        if left is not None:
            self.results.wait_at_least(max(1.0, left))
        who = f"run {run!r}" if run else "another writer"
        self.results.row(
            item.idx,
            item.key,
            item.connection,
            item.action,
            "in_flight_elsewhere",
            error=f"being written by {who} (its claim holds {max(left or 0, 0):.0f} s more); not sent",
        )

    def _held_body_is(self, item: Item) -> None:
        """Trackstar holds this body (proven): its ledger row learns this release's hash of it."""
        self.migrated.setdefault((item.connection, item.action), {})[key_id(item.key)] = item.body_hash

    def _unchanged(self, item: Item, **values: Any) -> bool:
        self.results.row(
            item.idx,
            item.key,
            item.connection,
            item.action,
            "unchanged",
            trackstar_id=item.trackstar_id,
            **values,
        )
        return True

    def _decide(self, item: Item, entry: LedgerEntry, unverified: list[Item]) -> bool:
        """Settle what the ledger alone can settle; False: the item goes to the lanes."""
        item.entry = entry
        item.generation = int(entry.generation or 0)
        if entry.trackstar_id and entry.status in ("created", "updated", "failed", "intent"):
            item.trackstar_id = entry.trackstar_id
            written = entry.written_hash  # None: held, body not verified (a rebuilt ledger)
            if written == item.body_hash:
                return self._unchanged(item)
            if written is not None and entry.encoding < ENCODING and written in legacy_body_hashes(item):
                self._held_body_is(item)
                return self._unchanged(item)
            if written is None:
                if self.mode == "upsert" and item.spec.update is not None:
                    unverified.append(item)
                    return True
                return self._unchanged(item)
            return self._changed(item)
        if entry.needs_reconcile:
            item.stage = "reconcile"
            item.unknown = True
        return False

    def _changed(self, item: Item) -> bool:
        """Trackstar holds another body of this record: update it (upsert) or report it (create_only)."""
        if self.mode == "create_only" or item.spec.update is None:
            error = (
                BODY_CHANGED_MESSAGE
                if self.mode == "create_only"
                else (f"body changed but {item.action} has no update path; not sent")
            )
            return self._unchanged(item, error=error, body_changed=True)
        item.operation = "update"
        return False

    async def _verify_held(self, lane: Lane, items: list[Item]) -> list[Item]:
        """Records held but with no known body (a ledger rebuilt by hand), in upsert mode: read them (100 ids a
        read) and update only those whose held fields differ from the body."""
        out: list[Item] = []
        spec = items[0].spec
        for i in range(0, len(items), 100):
            chunk = items[i : i + 100]
            try:
                records = await lane.client.alist_records(
                    spec.lookup_path,
                    lane.token,
                    filters={"ids[in]": ",".join(str(x.trackstar_id) for x in chunk)},
                )
            except BudgetUnavailableError as e:  # nothing can be read or sent: its records fail in the lane
                self.results.stop(lane, e)
                return out + items[i:]
            by_id = {str(r.get("id")): r for r in records}
            for item in chunk:
                record = by_id.get(str(item.trackstar_id))
                if record is not None and held_matches(record, item.body):
                    self._held_body_is(item)
                    self._unchanged(item)
                elif not self._changed(item):
                    out.append(item)
        return out
