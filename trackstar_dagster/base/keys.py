"""A record's identity, in one place: its key text, the id the ledger and the tag use, its tag, its
``Idempotency-Key``.

Why each rule:

* **Composite keys** join their parts with ``|`` and escape ``\\`` and ``|`` inside a part, so
  ``("a|b", "c")`` and ``("a", "b|c")`` stay two records. A key whose parts hold neither character reads as
  it always did, so ledgers written before this rule still match.
* **Key id**: the key itself when it is short and plain, else ``h:`` + 40 hex of its SHA-256. Every ledger
  backend can hold it (PostgreSQL refuses NUL and long primary keys) and it is the tail of the tag, so a
  record found in Trackstar by its tag names its ledger row.
* **Tag** ``tsd:<namespace>:<action>:<key id>`` in ``trackstar_tags``: the proof that a record in Trackstar
  is this record of this sync. The namespace (the sync's name) keeps two syncs on one token apart. Tags of
  the first release (``tsd:<action>:<key>``, no namespace) are still recognised as ours.
* **Idempotency keys**: a create's key does not depend on the body (two runs sending different bodies of one
  record must collide at the server, not both succeed); it advances by ``generation`` only after Trackstar
  definitely refused the record, so a fixed body is sent at once. An update's key is per body.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

TAG_PREFIX = "tsd"
KEY_ID_MAX = 100  # keys longer than this are hashed (the tag stays well under Trackstar's 255)
LEGACY_TAG_MAX = 120
NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,40}$")
_PLAIN = re.compile(r"^[^\x00-\x1f\x7f]*$")


def encode_key(parts: Sequence[str]) -> str:
    """One key text for one or several key columns' values, unambiguous (see the module docstring)."""
    if len(parts) == 1:
        return str(parts[0])
    return "|".join(str(p).replace("\\", "\\\\").replace("|", "\\|") for p in parts)


def legacy_key(parts: Sequence[str]) -> str:
    """The first release's key text (``|``-joined, ambiguous): read only, to find ledger rows it wrote."""
    return "|".join(str(p) for p in parts)


def key_problem(key: str) -> str | None:
    """Why a key cannot identify a record, or None."""
    if "\x00" in key:
        return "key contains a NUL character (\\x00), which no ledger database can store"
    if not key.strip():
        return "key is empty"
    return None


def key_id(key: str) -> str:
    """The ledger's and the tag's name for a key: itself when short and plain, else a hash."""
    if len(key) <= KEY_ID_MAX and _PLAIN.match(key) and not key.startswith("h:"):
        return key
    return "h:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def check_namespace(namespace: str | None) -> str | None:
    if namespace is not None and not NAMESPACE_RE.match(namespace):
        raise ValueError(
            f"tag namespace {namespace!r} must be 1-40 letters, digits, '_', '.' or '-' (it is the sync's name)"
        )
    return namespace


def key_tag(action: str, key: str, namespace: str | None = None) -> str:
    """The ``trackstar_tags`` entry that proves a record is this key's (``trackstar_tags[contains]=<tag>``).

    Tags are looked up through one connection's token, so the connection is not part of the text.
    Without a namespace the first release's format is produced (still accepted as proof).
    """
    if namespace is None:
        return legacy_key_tag(action, key)
    return f"{TAG_PREFIX}:{check_namespace(namespace)}:{action}:{key_id(key)}"


def legacy_key_tag(action: str, key: str) -> str:
    """The first release's tag, ``tsd:<action>:<key>`` (hashed past 120 characters)."""
    tag = f"{TAG_PREFIX}:{action}:{key}"
    if len(tag) > LEGACY_TAG_MAX:
        tag = (
            f"{TAG_PREFIX}:{action}:h:{hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()[:40]}"
        )
    return tag


def tags_of(action: str, key: str, namespace: str | None) -> tuple[str, ...]:
    """Every tag that proves a record is this key's: the current one, then the first release's."""
    current = key_tag(action, key, namespace)
    legacy = legacy_key_tag(action, key)
    return (current,) if current == legacy else (current, legacy)


def record_tags(record: Mapping[str, Any]) -> set[str]:
    """The tag texts a record carries (string tags, and the values of one-key object tags)."""
    out: set[str] = set()
    for t in record.get("trackstar_tags") or []:
        if isinstance(t, str):
            out.add(t)
        elif isinstance(t, dict):
            out.update(str(v) for v in t.values())
    return out


def has_tag(record: Mapping[str, Any], tags: str | Iterable[str]) -> bool:
    """True when the record carries one of ``tags`` (proof it is ours)."""
    wanted = {tags} if isinstance(tags, str) else set(tags)
    return not wanted.isdisjoint(record_tags(record))


def parse_tag(tag: str, namespace: str) -> tuple[str, str] | None:
    """(action, key id) of one of this namespace's tags, else None (for rebuilding a ledger from a listing)."""
    prefix = f"{TAG_PREFIX}:{namespace}:"
    if not tag.startswith(prefix):
        return None
    action, sep, kid = tag[len(prefix) :].partition(":")
    return (action, kid) if sep and action and kid else None


def create_idempotency_key(
    namespace: str | None, connection: str, action: str, key: str, generation: int
) -> str:
    """``Idempotency-Key`` of a create: the same for every body of a record until Trackstar refused it."""
    raw = json.dumps(
        ["create", namespace or "", connection, action, key_id(key), int(generation)], separators=(",", ":")
    )
    return "tsd-c-" + hashlib.sha256(raw.encode("utf-8")).hexdigest()


def update_idempotency_key(
    namespace: str | None, connection: str, action: str, key: str, body_hash: str
) -> str:
    """``Idempotency-Key`` of an update: one per body (a changed body is a new request)."""
    raw = json.dumps(
        ["update", namespace or "", connection, action, key_id(key), body_hash], separators=(",", ":")
    )
    return "tsd-u-" + hashlib.sha256(raw.encode("utf-8")).hexdigest()
