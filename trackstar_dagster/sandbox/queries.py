"""The sandbox's list queries: ``field[op]=value`` filters, ``limit`` and opaque page tokens.

Kept apart from the routes so they stay about HTTP; ``DataRoutes`` (record lists) and ``CatalogRoutes``
(``GET /connections``) use these. The matching rules are described in ``app.py``'s module docstring.
"""

from __future__ import annotations

import base64
import json
import operator
import re
from collections.abc import Callable
from typing import Any

from trackstar_dagster.base.timestamps import parse_timestamp

MAX_LIMIT = 1000
FILTER_RE = re.compile(r"^([A-Za-z0-9_.]+)(?:\[([A-Za-z_-]+)\])?$")
FILTER_OPS = (
    "eq",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "nin",
    "contains",
    "not_contains",
    "eq-insensitive",
    "in-insensitive",
    "contains-insensitive",
)


# -- filters and pages -----------------------------------------------------------------------------------
def _lookup(record: dict[str, Any], field_path: str) -> Any:
    node: Any = record
    for part in field_path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def tag_matches(tags: Any, wanted: str) -> bool:
    """``trackstar_tags[contains]=X``: a string tag equal to X, or a one-key ``{k: v}`` tag with ``k:v``, v or k == X."""
    if not isinstance(tags, list):
        return False
    for tag in tags:
        if isinstance(tag, str) and tag == wanted:
            return True
        if isinstance(tag, dict):
            for k, v in tag.items():
                if wanted in (f"{k}:{v}", _as_text(v), k):
                    return True
    return False


Predicate = Callable[[dict[str, Any]], bool]
#: the ordering filters, applied to two numbers or two strings
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def build_filter(field_name: str, op: str, raw: str) -> Predicate:
    """One ``field[op]=value`` filter as a predicate; ValueError with a message for a bad one."""
    if op not in FILTER_OPS:
        raise ValueError(f"Unknown filter operator {op!r}; use one of {', '.join(FILTER_OPS)}.")
    if field_name == "trackstar_tags":
        if op not in ("contains", "not_contains", "eq"):
            raise ValueError("trackstar_tags supports [contains] and [not_contains].")
        negate = op == "not_contains"
        return lambda r: tag_matches(r.get("trackstar_tags"), raw) != negate
    values = raw.split(",") if op.startswith(("in", "nin")) else [raw]
    if len(values) > 100:
        raise ValueError("At most 100 values in an [in]/[nin] filter.")
    if field_name.endswith("_date") and op in ("eq", "neq", "gt", "gte", "lt", "lte"):
        bound = parse_timestamp(raw)
        if bound is None:
            raise ValueError(f"Not a valid ISO 8601 datetime: {raw!r}.")
        cmp = {
            "eq": lambda a: a == bound,
            "neq": lambda a: a != bound,
            "gt": lambda a: a > bound,
            "gte": lambda a: a >= bound,
            "lt": lambda a: a < bound,
            "lte": lambda a: a <= bound,
        }[op]

        def date_pred(r: dict[str, Any]) -> bool:
            got = parse_timestamp(_lookup(r, field_name))
            return got is not None and cmp(got)

        return date_pred
    insensitive = op.endswith("-insensitive")
    base_op = op.removesuffix("-insensitive")
    norm: Callable[[str], str] = str.casefold if insensitive else (lambda s: s)
    wanted = [norm(v) for v in values]

    def pred(r: dict[str, Any]) -> bool:
        value = _lookup(r, field_name)
        items = [norm(_as_text(v)) for v in value] if isinstance(value, list) else [norm(_as_text(value))]
        present = value is not None
        if base_op == "eq":
            return present and wanted[0] in items
        if base_op == "neq":
            return wanted[0] not in items
        if base_op == "in":
            return present and any(i in wanted for i in items)
        if base_op == "nin":
            return not any(i in wanted for i in items)
        if base_op == "contains":
            return present and any(wanted[0] in i for i in items)
        if base_op == "not_contains":
            return not any(wanted[0] in i for i in items)
        pair: tuple[float, float] | tuple[str, str]
        try:  # gt/gte/lt/lte on numbers, else on text
            pair = (float(_as_text(value)), float(raw))
        except ValueError:
            pair = (_as_text(value), raw)
        if not present:
            return False
        return _ORDER[base_op](*pair)

    return pred


def encode_page_token(after: int) -> str:
    """The opaque ``next_token``: the sequence number of the last item returned (clients must not parse it)."""
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode().rstrip("=")


def decode_page_token(token: str) -> int:
    """The position a ``page_token`` encodes; ValueError (or KeyError) for one this sandbox did not make."""
    padded = token + "=" * (-len(token) % 4)
    return int(json.loads(base64.urlsafe_b64decode(padded.encode()))["after"])


def parse_limit(raw: str | None) -> int:
    """``limit``: default and max 1000 (larger values are clamped); ValueError when not a positive integer."""
    if raw is None or raw == "":
        return MAX_LIMIT
    n = int(raw)
    if n < 1:
        raise ValueError("limit must be at least 1")
    return min(n, MAX_LIMIT)


def paginate(items: list[Any], keys: list[int], limit: int, page_token: str | None) -> dict[str, Any]:
    """``{"data", "next_token", "total_count"}`` over items with ascending sort keys; the token is opaque."""
    after = decode_page_token(page_token) if page_token else -1
    start = next((i for i, k in enumerate(keys) if k > after), len(items))
    page = items[start : start + limit]
    more = start + limit < len(items)
    next_token = encode_page_token(keys[start + limit - 1]) if more and page else None
    return {"data": page, "next_token": next_token, "total_count": len(page)}
