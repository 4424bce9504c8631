"""Judging a write body against a connection's write-info document, as the sandbox answers with a 422.

Kept apart from the routes so they stay about HTTP: this module owns the JSON Schema format checks
(``date``, ``date-time``), the 422 detail keys (``dotted``/``null_path``), ``judge_body`` itself, the
write-info document as one connection sees it (its warehouse ids and return causes in the enums), and
``check_write_info``: whether a document replacing one while running is one writes can be judged with.
"""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

from trackstar_dagster.base.nulls import find_null_like
from trackstar_dagster.sandbox.responses import MAX_JSON_DEPTH, exceeds_depth
from trackstar_dagster.sandbox.state import Connection
from trackstar_dagster.schema.openapi import (
    REF_PREFIX,
    WRITE_METHODS,
    is_placeholder_enum,
    json_types,
    normalise_schema,
    operations,
)
from trackstar_dagster.schema.rules import FORMAT_CHECKS

PLACEHOLDER = "N/A - Connect an account to see options"


# -- validation ------------------------------------------------------------------------------------------
# the one meaning of ``format`` (shared with body_validator): the rule, not the validator, is shared
FORMAT_CHECKER = FormatChecker(formats=())
for _name, _check in FORMAT_CHECKS.items():
    FORMAT_CHECKER.checks(_name)(lambda value, _check=_check: not isinstance(value, str) or _check(value))


def dotted(path: Any) -> str:
    """A jsonschema error path as a 422 detail key (``line_items.0.sku``)."""
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


def doc_with_enums(doc: dict[str, Any], conn: Connection | None) -> dict[str, Any]:
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


# -- write-info documents replaced while running ---------------------------------------------------------
def check_write_info(doc: Any) -> None:
    """``ValueError("Bad write-info document: ...")`` unless ``doc`` can replace a write-info document.

    That is: an object (OpenAPI) whose ``paths`` is an object of path items; its write operations, request
    bodies, media types and component schemas objects where OpenAPI says so; nested at most
    ``MAX_JSON_DEPTH`` levels; and every write operation's normalised body schema a valid JSON Schema whose
    ``$ref``s resolve inside it. Everything a later write or ``GET .../write-info`` does with the document is
    tried here once, so a document that passes cannot make them fail.
    """

    def bad(why: str) -> ValueError:
        return ValueError(f"Bad write-info document: {why}")

    if not isinstance(doc, dict):
        raise bad(f"expected an OpenAPI object with 'paths', got a JSON {_json_kind(doc)}.")
    if not isinstance(doc.get("paths"), dict):
        raise bad("'paths' must be an object of path items.")
    if exceeds_depth(doc, MAX_JSON_DEPTH):
        raise bad(f"nested more than {MAX_JSON_DEPTH} levels deep.")
    for path, item in doc["paths"].items():
        if not isinstance(item, dict):
            raise bad(f"paths[{path!r}] must be an object.")
        for method, op in item.items():
            if method.lower() not in WRITE_METHODS:
                continue
            where = f"{method.upper()} {path}"
            if not isinstance(op, dict):
                raise bad(f"{where} must be an object.")
            request_body = op.get("requestBody", {})
            if not isinstance(request_body, dict) or not isinstance(request_body.get("content", {}), dict):
                raise bad(f"{where}: requestBody and its content must be objects.")
            for media_type, media in request_body.get("content", {}).items():
                if not isinstance(media, dict) or not isinstance(media.get("schema", {}), dict):
                    raise bad(f"{where}: content[{media_type!r}] and its schema must be objects.")
    components = doc.get("components", {})
    if not isinstance(components, dict) or not isinstance(components.get("schemas", {}), dict):
        raise bad("'components' and 'components.schemas' must be objects.")
    try:
        doc_with_enums(doc, None)
        # one schema holding every write's normalised body (one check_schema: it is slow, ~50 ms a call)
        combined: dict[str, Any] = {"$defs": {}, "properties": {}}
        for op in operations(doc):
            schema = normalise_schema(doc, op.action)
            combined["$defs"] = schema.pop("$defs")
            schema.pop("$schema", None)
            combined["properties"][f"{op.method} {op.path}"] = schema
        Draft202012Validator.check_schema(combined)
        _check_refs(combined)
    except SchemaError as exc:
        raise bad(f"not a valid JSON Schema at {_schema_place(exc.absolute_path)}: {exc.message}.") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise bad(str(exc)) from None


def _schema_place(path: Any) -> str:
    """Where a SchemaError of ``check_write_info``'s combined schema is, in the document's terms."""
    parts = [str(p) for p in path]
    if parts[:1] == ["$defs"]:
        return ".".join(["components.schemas", *parts[1:]])
    if parts[:1] == ["properties"] and len(parts) > 1:
        return " ".join([f"the {parts[1]} body schema", ".".join(parts[2:])]).strip()
    return ".".join(parts) or "the root"


def _json_kind(value: Any) -> str:
    kinds = {
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }
    return kinds.get(type(value), type(value).__name__)


def _check_refs(schema: dict[str, Any]) -> None:
    """Every ``$ref`` in ``schema`` a JSON pointer (``#/...``) that resolves inside it (ValueError if not):
    the validator would otherwise fail, or try to fetch a remote document, on the first body that reaches it."""
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        ref = node.get("$ref")
        if isinstance(ref, str):
            try:
                _resolve_pointer(schema, ref)
            except ValueError as exc:  # say it the way the document does
                raise ValueError(str(exc).replace("#/$defs/", REF_PREFIX)) from None
        stack.extend(v for k, v in node.items() if k not in ("enum", "const"))


def _resolve_pointer(root: Any, ref: str) -> Any:
    if ref != "#" and not ref.startswith("#/"):
        raise ValueError(f"$ref {ref!r} is not local (only #/components/schemas/... is read)")
    node = root
    for part in ref[2:].split("/") if ref != "#" else []:
        key = unquote(part).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            raise ValueError(f"$ref {ref!r} does not resolve")
    return node
