"""Judging a write body against a connection's write-info document, as the sandbox answers with a 422.

Split out of ``app.py`` so the routes stay about HTTP: this module owns the JSON Schema format checks
(``date``, ``date-time``), the 422 detail keys (``dotted``/``null_path``), ``judge_body`` itself, and the
write-info document as one connection sees it (its warehouse ids and return causes in the enums).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from trackstar_dagster.nulls import find_null_like
from trackstar_dagster.sandbox.state import Connection
from trackstar_dagster.schema.openapi import is_placeholder_enum, json_types
from trackstar_dagster.schema.validator import FORMAT_CHECKS

PLACEHOLDER = "N/A - Connect an account to see options"


# -- validation ------------------------------------------------------------------------------------------
# the one meaning of ``format`` (shared with body_validator): the rule, not the validator, is shared
FORMAT_CHECKER = FormatChecker(formats=())
for _name, _check in FORMAT_CHECKS.items():
    FORMAT_CHECKER.checks(_name)(lambda value, _check=_check: not isinstance(value, str) or _check(value))


def dotted(path: Any) -> str:
    return ".".join(str(p) for p in path)


def null_path(path: str) -> str:
    """``line_items[0].sku`` (nulls.find_null_like) -> ``line_items.0.sku`` (422 detail keys)."""
    return re.sub(r"\[(\d+)\]", r".\1", path)


def judge_body(validator: Draft202012Validator, body: Any) -> dict[str, list[str]]:
    """Field path -> messages: null-like values first, then JSON Schema errors (missing, type, enum, unknown)."""
    out: dict[str, list[str]] = {}

    def add(path: str, msg: str) -> None:
        msgs = out.setdefault(path or "_schema", [])
        if msg not in msgs:
            msgs.append(msg)

    if not isinstance(body, dict):
        add("_schema", "Invalid input type: the body must be a JSON object.")
        return out
    nulls = {null_path(p) for p in find_null_like(body)}
    for p in sorted(nulls):
        add(p, "Field may not be null or empty: leave it out instead.")
    for err in validator.iter_errors(body):
        base = dotted(err.absolute_path)
        if err.validator == "required" and isinstance(err.instance, dict):
            for name in err.validator_value:
                if name not in err.instance:
                    add(f"{base}.{name}" if base else name, "Missing data for required field.")
        elif err.validator == "additionalProperties" and isinstance(err.instance, dict):
            props = err.schema.get("properties") or {}
            patterns = err.schema.get("patternProperties") or {}
            for name in err.instance:
                if name not in props and not any(re.search(p, name) for p in patterns):
                    add(f"{base}.{name}" if base else name, "Unknown field.")
        elif base in nulls:
            continue  # already reported as null-like
        elif err.validator == "oneOf":
            add(base, f"Must match exactly one of the allowed shapes: {err.message}")
        else:
            add(base, err.message)
    return out


def _doc_with_enums(doc: dict[str, Any], conn: Connection | None) -> dict[str, Any]:
    """Write-info as a connection sees it (its warehouse ids, return causes) or, without one, with placeholders."""
    doc = copy.deepcopy(doc)

    def values_for(name: str) -> list[str] | None:
        if conn is None:
            return None
        if name == "warehouse_id":
            return list(conn.warehouse_ids)
        if name in ("code", "return_cause_code", "return_cause"):
            return [c for c, _ in conn.return_causes]
        if name in ("return_reason", "reason"):
            return [r for _, r in conn.return_causes]
        return None

    def apply(name: str, prop: dict[str, Any]) -> None:
        types, _ = json_types(prop)
        enum = prop.get("enum")
        placeholder = is_placeholder_enum(enum) or enum == ["N/A"]
        if name == "warehouse_id" and (not types or "string" in types):
            prop["enum"] = values_for(name) or [PLACEHOLDER]
        elif placeholder and conn is not None:
            vals = values_for(name)
            if vals:
                prop["enum"] = vals
            else:
                prop.pop("enum", None)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict):
                for name, prop in props.items():
                    if isinstance(prop, dict):
                        apply(name, prop)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return doc
