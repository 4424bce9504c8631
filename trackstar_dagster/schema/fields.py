"""One row per field of every write operation of a write-info document, so users see what each write needs.

The walk follows ``$ref`` (stopping at a ref already on the current path, so cycles end), flattens array
items under the array's name (``line_items.sku``, also through arrays of arrays), merges ``allOf`` and marks
the fields of ``oneOf``/``anyOf`` branches with the branch they came from. ``required_effective`` is the
conjunction of ``required`` from the body root down; fields inside a ``oneOf``/``anyOf`` branch are never
effectively required (another branch may be chosen).
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from trackstar_dagster.schema.openapi import (
    REF_PREFIX,
    is_placeholder_enum,
    json_types,
    operations,
    ref_name,
)

FIELD_COLUMNS: tuple[str, ...] = (
    "integration_type",
    "integration_name",
    "action",
    "method",
    "path",
    "field",
    "type",
    "format",
    "nullable",
    "required",
    "required_effective",
    "enum",
    "description",
    "example",
    "branch",
)
BOOL_COLUMNS: tuple[str, ...] = ("nullable", "required", "required_effective")
#: every other column but ``enum`` (a list per row) holds text
STRING_COLUMNS: tuple[str, ...] = tuple(c for c in FIELD_COLUMNS if c not in (*BOOL_COLUMNS, "enum"))

#: The name used for the values of an open map (``additionalProperties: {schema}``): ``custom_fields.*``.
ADDITIONAL_KEY = "*"


class _Walker:
    """Collects field rows for one operation; holds the document for ``$ref`` lookups."""

    def __init__(self, doc: dict[str, Any], base: dict[str, Any]) -> None:
        self.doc = doc
        self.schemas = (doc.get("components") or {}).get("schemas") or {}
        self.base = base
        self.rows: list[dict[str, Any]] = []

    def deref(self, node: Any, stack: tuple[str, ...]) -> tuple[Any, tuple[str, ...], bool]:
        """Follow ``$ref``s: (node, ref names followed, stop) where stop means a cycle or a missing schema."""
        names: list[str] = []
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if not ref.startswith(REF_PREFIX):
                return node, tuple(names), True
            name = ref_name(ref)
            if name in stack or name in names or name not in self.schemas:
                return node, tuple(names), True
            names.append(name)
            node = self.schemas[name]
        return node, tuple(names), False

    # -- describing one node -------------------------------------------------------------------------

    def kinds(self, node: Any, stack: tuple[str, ...], depth: int = 0) -> tuple[list[str], bool]:
        """(JSON types without null, nullable) of a node, looking through refs and composition branches."""
        node, names, stop = self.deref(node, stack)
        if not isinstance(node, dict):
            return [], False
        types, nullable = json_types(node)
        if isinstance(node.get("enum"), list) and None in node["enum"]:
            nullable = True
        if not types:
            if isinstance(node.get("properties"), dict) or "additionalProperties" in node:
                types = ["object"]
            elif "items" in node or "prefixItems" in node:
                types = ["array"]
        if (not types or not nullable) and not stop and depth < 8:
            branch_types: list[str] = []
            for key in ("allOf", "oneOf", "anyOf"):
                for branch in node.get(key) or []:
                    b_types, b_null = self.kinds(branch, stack + names, depth + 1)
                    branch_types += [t for t in b_types if t not in branch_types]
                    nullable = nullable or (b_null and key != "allOf")
            if not types:
                types = branch_types
        return types, nullable

    def row(
        self,
        field: str,
        node: Any,
        outer: dict[str, Any],
        required: bool,
        effective: bool,
        branch: str | None,
    ) -> None:
        types, nullable = self.kinds(outer, ())  # described even where the walk stops (a cycle)
        enum_raw = node.get("enum") if isinstance(node, dict) else None
        if enum_raw is None and isinstance(outer, dict):
            enum_raw = outer.get("enum")
        enum = (
            []
            if not isinstance(enum_raw, list) or is_placeholder_enum(enum_raw)
            else [v for v in enum_raw if v is not None]
        )
        self.rows.append(
            {
                **self.base,
                "field": field,
                "type": "|".join(types) if types else None,
                "format": _first(outer, node, "format"),
                "nullable": bool(nullable),
                "required": bool(required),
                "required_effective": bool(effective),
                "enum": enum,
                "description": _first(outer, node, "description"),
                "example": _example(outer, node),
                "branch": branch,
            }
        )

    # -- walking ---------------------------------------------------------------------------------------

    def expand(
        self, node: Any, prefix: str, effective: bool, branch: str | None, stack: tuple[str, ...]
    ) -> None:
        """Emit rows for everything below ``node`` (already dereferenced) under the dotted ``prefix``."""
        if not isinstance(node, dict):
            return
        props = node.get("properties")
        raw_required = node.get("required")
        required = raw_required if isinstance(raw_required, list) else []
        if isinstance(props, dict):
            for name, prop in props.items():
                self.field(str(name), prop, prefix, name in required, effective, branch, stack)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            self.field(ADDITIONAL_KEY, extra, prefix, False, effective, branch, stack)
        for key in ("allOf", "oneOf", "anyOf"):
            branches = node.get(key)
            if not isinstance(branches, list):
                continue
            for i, sub in enumerate(branches):
                target, names, stop = self.deref(sub, stack)
                if stop or not isinstance(target, dict):
                    continue
                if key == "allOf":
                    sub_branch = branch if len(branches) == 1 else _branch_name(key, i, names, target)
                    sub_effective = effective
                else:
                    sub_branch = _branch_name(key, i, names, target)
                    sub_effective = False
                self.expand(target, prefix, sub_effective, sub_branch, stack + names)
        items = node.get("items")
        if isinstance(items, dict):
            target, names, stop = self.deref(items, stack)
            if not stop:
                self.expand(target, prefix, effective, branch, stack + names)

    def field(
        self,
        name: str,
        prop: Any,
        prefix: str,
        required: bool,
        parent_effective: bool,
        branch: str | None,
        stack: tuple[str, ...],
    ) -> None:
        path = f"{prefix}.{name}" if prefix else name
        target, names, stop = self.deref(prop, stack)
        effective = parent_effective and required
        described = self.deref(prop, ())[0] if stop else target
        self.row(path, described, prop if isinstance(prop, dict) else {}, required, effective, branch)
        if not stop:
            self.expand(target, path, effective, branch, stack + names)


def _branch_name(key: str, index: int, names: tuple[str, ...], node: dict[str, Any]) -> str:
    """A branch is named by the schema it refers to, else its title, else ``oneOf[0]``."""
    if names:
        return names[-1]
    title = node.get("title")
    return title if isinstance(title, str) and title else f"{key}[{index}]"


def _first(outer: Any, node: Any, key: str) -> str | None:
    """An annotation from the property node (which may sit beside a ``$ref``), else from its target."""
    for source in (outer, node):
        if isinstance(source, dict) and isinstance(source.get(key), str):
            return source[key]
    return None


def _example(outer: Any, node: Any) -> str | None:
    """The example as JSON text (``examples[0]`` when there is no ``example``)."""
    for source in (outer, node):
        if not isinstance(source, dict):
            continue
        if "example" in source:
            return json.dumps(source["example"], ensure_ascii=False, default=str)
        examples = source.get("examples")
        if isinstance(examples, list) and examples:
            return json.dumps(examples[0], ensure_ascii=False, default=str)
    return None


def empty_fields_frame() -> pd.DataFrame:
    """The fields frame with no rows, typed as a full one."""
    return _typed(pd.DataFrame({c: [] for c in FIELD_COLUMNS}))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    for col in STRING_COLUMNS:
        frame[col] = frame[col].astype("str")
    for col in BOOL_COLUMNS:
        frame[col] = frame[col].astype(bool)
    frame["enum"] = frame["enum"].astype(object)
    return frame


def write_info_fields(doc: dict[str, Any], integration_type: str, integration_name: str) -> pd.DataFrame:
    """A row per property at every level of every write operation of a write-info document.

    Columns: ``FIELD_COLUMNS``. String columns are pandas string dtype (missing = NA), the three flags are
    bool and ``enum`` holds Python lists (empty when the schema has none or only the placeholder).
    """
    rows: list[dict[str, Any]] = []
    for op in operations(doc):
        walker = _Walker(
            doc,
            {
                "integration_type": integration_type,
                "integration_name": integration_name,
                "action": op.action,
                "method": op.method,
                "path": op.path,
            },
        )
        root, names, stop = walker.deref(op.schema, ())
        if not stop:
            walker.expand(root, "", True, None, names)
        rows += walker.rows
    if not rows:
        return empty_fields_frame()
    frame = pd.DataFrame.from_records(rows, columns=list(FIELD_COLUMNS))
    return _typed(frame)
