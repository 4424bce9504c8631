"""The integrations catalog (``GET /integrations/{type}``) as one row per integration x write operation.

The published seed example has a trailing comma, so the reader is lenient about that (and only that).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pandas as pd

from trackstar_dagster.schema.openapi import action_for

CATALOG_COLUMNS: tuple[str, ...] = (
    "integration_type",
    "integration_name",
    "display_name",
    "action",
    "method",
    "path",
    "required_base_schema_fields",
    "optional_base_schema_fields",
    "integration_specific_fields",
    "integration_specific_required",
    "available_actions",
)
CATALOG_STRING_COLUMNS: tuple[str, ...] = CATALOG_COLUMNS[:6]
CATALOG_LIST_COLUMNS: tuple[str, ...] = CATALOG_COLUMNS[6:]

# a JSON string (kept as is) or a comma followed only by whitespace and a closing bracket (dropped)
_TRAILING_COMMA = re.compile(r'("(?:[^"\\]|\\.)*")|,(\s*[\]}])', re.DOTALL)


def parse_json_lenient(text: str | bytes) -> Any:
    """``json.loads`` that also accepts trailing commas before ``]``/``}`` (commas inside strings untouched)."""
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8-sig")
    text = text.lstrip("\ufeff")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        cleaned = _TRAILING_COMMA.sub(lambda m: m.group(1) or m.group(2), text)
        return json.loads(cleaned)


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(v) for v in value if v is not None]


def _split_url(url: Any) -> tuple[str | None, str | None]:
    """``"POST /wms/orders"`` -> (``POST``, ``/wms/orders``)."""
    if not isinstance(url, str) or not url.strip():
        return None, None
    parts = url.strip().split(None, 1)
    if len(parts) == 1:
        return (None, parts[0]) if parts[0].startswith("/") else (parts[0].upper(), None)
    return parts[0].upper(), parts[1].strip()


def _integrations(answer: Any) -> list[dict[str, Any]]:
    if isinstance(answer, str | bytes):
        answer = parse_json_lenient(answer)
    if isinstance(answer, dict):
        answer = answer.get("data", [answer] if "integration_name" in answer else [])
    return [i for i in answer or [] if isinstance(i, dict)]


def catalog_frame(answers: dict[str, Any]) -> pd.DataFrame:
    """integration_type -> ``GET /integrations/{type}`` answer (``{"data": [...]}``, the list, or its JSON text)
    -> one row per integration x write operation (``CATALOG_COLUMNS``; list columns hold Python lists).

    Integrations without write operations still get one row, with ``action``/``method``/``path`` missing, so
    the catalog shows every integration. Missing keys (older examples lack ``display_name``) are tolerated.
    """
    rows: list[dict[str, Any]] = []
    for integration_type, answer in answers.items():
        for info in _integrations(answer):
            base = {
                "integration_type": integration_type,
                "integration_name": info.get("integration_name"),
                "display_name": info.get("display_name"),
                "available_actions": _str_list(info.get("available_actions")),
            }
            ops = [op for op in info.get("write_operations") or [] if isinstance(op, dict)]
            if not ops:
                rows.append(
                    {
                        **base,
                        "action": None,
                        "method": None,
                        "path": None,
                        "required_base_schema_fields": [],
                        "optional_base_schema_fields": [],
                        "integration_specific_fields": [],
                        "integration_specific_required": [],
                    }
                )
            for op in ops:
                method, path = _split_url(op.get("url"))
                action = op.get("action") or (action_for(method, path) if method and path else None)
                specific = op.get("integration_specific_fields")
                specific = specific if isinstance(specific, dict) else {}
                props = specific.get("properties")
                rows.append(
                    {
                        **base,
                        "action": action,
                        "method": method,
                        "path": path,
                        "required_base_schema_fields": _str_list(op.get("required_base_schema_fields")),
                        "optional_base_schema_fields": _str_list(op.get("optional_base_schema_fields")),
                        "integration_specific_fields": [str(k) for k in props]
                        if isinstance(props, dict)
                        else [],
                        "integration_specific_required": _str_list(
                            specific.get("required_fields", specific.get("required"))
                        ),
                    }
                )
    frame = pd.DataFrame.from_records(rows, columns=list(CATALOG_COLUMNS))
    for col in CATALOG_STRING_COLUMNS:
        frame[col] = frame[col].astype("str")
    for col in CATALOG_LIST_COLUMNS:
        frame[col] = frame[col].astype(object)
    return frame


def required_fields(row: dict[str, Any] | pd.Series) -> list[str]:
    """Every field a catalog row calls required: the base schema's plus the integration's own."""
    return [*row["required_base_schema_fields"], *row["integration_specific_required"]]
