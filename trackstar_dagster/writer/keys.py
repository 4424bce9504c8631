"""Names that identify one write: the ``Idempotency-Key`` of a body, and finding a record by its key tag.

Split out of ``writer.py`` so the run engine is only about sending; these are pure functions of a record's
identity. ``key_tag`` (the tag every body carries) is built in ``mapping`` and re-exported here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ..mapping import key_tag  # the tag every body carries; re-exported for callers

__all__ = ["idempotency_key", "key_tag"]


# ---------------------------------------------------------------------------------------------------------
# Keys and tags
# ---------------------------------------------------------------------------------------------------------


def idempotency_key(connection: str, action: str, key: str, body_hash: str, operation: str = "create") -> str:
    """Stable ``Idempotency-Key`` (68 chars) for one body of one record.

    The operation is part of it because Trackstar answers 400 to a key reused on another endpoint
    (the create and the update of the same body are different requests).
    """
    raw = json.dumps([connection, action, str(key), body_hash, operation], separators=(",", ":"))
    return "tsd-" + hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _has_tag(record: Mapping[str, Any], tag: str) -> bool:
    for t in record.get("trackstar_tags") or []:
        if t == tag or (isinstance(t, dict) and tag in [str(v) for v in t.values()]):
            return True
    return False
