"""Validation of mapped rows, in two layers, both giving a reason per row.

(a) pandera on the flat frames (after coercion, before bodies exist): a static model of the Base Schema's
    fields (``BaseOrderRowsModel``) and a schema built from each target integration's write-info fields
    (required leaves present, enums, lengths, patterns, ranges). ``lazy=True``: every failure is collected,
    then turned into per-row reasons. All checks are vectorised.
(b) every finished body through the write-info ``body_validator`` (additionalProperties, nested requirements).

Layer (a) checks every value-level rule the write-info documents use, so two bodies with the same *shape* (the
same set of present fields, per item too) get the same answer from layer (b); ``mapping`` therefore validates
one body per shape and all bodies of a shape that fails (see ``FieldSpec`` / ``leaf_is_complete``).

No Dagster here: ``failure_summary`` gives plain frames the Dagster layer turns into asset check metadata.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from trackstar_dagster.mapping.fieldspec import FieldSpec
from trackstar_dagster.schema.fields import write_info_fields
from trackstar_dagster.schema.openapi import find_operation, is_placeholder_enum, resolve
from trackstar_dagster.schema.validator import BodyValidator, body_validator, document_digest

#: Keywords at a leaf that layer (a) checks exactly (or that carry no rule). Any other keyword at a mapped
#: leaf means bodies of that integration are all validated one by one.
HANDLED_KEYWORDS = frozenset(
    {
        "type",
        "format",
        "enum",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "nullable",
        "description",
        "example",
        "examples",
        "title",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$ref",
    }
)
FAILURE_COLUMNS = ("check", "column", "failure_case", "index")
SUMMARY_COLUMNS = ("check", "column", "count", "failure_case", "index", "sample")


class BaseOrderRowsModel(pa.DataFrameModel):
    """The Base Schema's own rules on the flat frame, whatever the integration: types and sane amounts.

    Columns are named by their target dotted path; every column is optional (only mapped ones are checked).
    """

    key: Series[str] | None = pa.Field(nullable=False)
    quantity: Series[pd.Int64Dtype] | None = pa.Field(ge=1, nullable=True, alias="line_items.quantity")
    unit_price: Series[pd.Float64Dtype] | None = pa.Field(ge=0, nullable=True, alias="line_items.unit_price")
    discount_amount: Series[pd.Float64Dtype] | None = pa.Field(
        ge=0, nullable=True, alias="line_items.discount_amount"
    )
    total_price: Series[pd.Float64Dtype] | None = pa.Field(ge=0, nullable=True, alias="total_price")
    total_tax: Series[pd.Float64Dtype] | None = pa.Field(ge=0, nullable=True, alias="total_tax")
    total_discount: Series[pd.Float64Dtype] | None = pa.Field(ge=0, nullable=True, alias="total_discount")
    total_shipping: Series[pd.Float64Dtype] | None = pa.Field(ge=0, nullable=True, alias="total_shipping")

    class Config:
        strict = False
        coerce = False


BASE_COLUMNS = frozenset(
    {
        "key",
        "line_items.quantity",
        "line_items.unit_price",
        "line_items.discount_amount",
        "total_price",
        "total_tax",
        "total_discount",
        "total_shipping",
    }
)


class PayloadsModel(pa.DataFrameModel):
    """The payloads frame ``build_payloads`` returns."""

    key: Series[str] = pa.Field(nullable=False)
    connection: Series[str] = pa.Field(nullable=False)
    action: Series[str] = pa.Field(nullable=False)
    body: Series[str] = pa.Field(nullable=False)
    body_hash: Series[str] = pa.Field(nullable=False, str_length={"min_value": 64, "max_value": 64})
    source_rows: Series[object]
    #: the key tag in the body's ``trackstar_tags`` (null when it carries none): the writer's proof of a record
    tag: Series[str] = pa.Field(nullable=True)


class RejectsModel(pa.DataFrameModel):
    """The rejects frame: one row per (record, field, reason)."""

    key: Series[str] = pa.Field(nullable=True)
    connection: Series[str] = pa.Field(nullable=True)
    source_rows: Series[object]
    field: Series[str] = pa.Field(nullable=False)
    reason: Series[str] = pa.Field(nullable=False)
    value: Series[str] = pa.Field(nullable=True)


# -- field specs from write-info ------------------------------------------------------------------------


def _properties(doc: dict[str, Any], node: Any) -> dict[str, Any]:
    """The properties of an object node, ``allOf`` branches merged, arrays seen through to their items."""
    _, node = resolve(doc, node)
    if not isinstance(node, dict):
        return {}
    if "items" in node and isinstance(node["items"], dict) and not node.get("properties"):
        _, node = resolve(doc, node["items"])
        if not isinstance(node, dict):
            return {}
    props = dict(node.get("properties") or {})
    for branch in node.get("allOf") or []:
        props.update(_properties(doc, branch))
    return props


def leaf_node(doc: dict[str, Any], action: str, path: str) -> dict[str, Any] | None:
    """The schema node of a dotted field path (``ship_to_address.city``), refs and ``allOf`` merged in."""
    node: Any = find_operation(doc, action).schema
    for segment in path.split("."):
        node = _properties(doc, node).get(segment)
        if node is None:
            return None
    merged: dict[str, Any] = {k: v for k, v in node.items() if k != "$ref"} if isinstance(node, dict) else {}
    _, target = resolve(doc, node)
    if isinstance(target, dict):
        for k, v in target.items():
            merged.setdefault(k, v)
        for branch in target.get("allOf") or []:
            _, b = resolve(doc, branch)
            if isinstance(b, dict):
                for k, v in b.items():
                    merged.setdefault(k, v)
        merged.pop("allOf", None) if len(target.get("allOf") or []) == 1 else None
    return merged


def field_specs(
    doc: dict[str, Any], integration_type: str, integration_name: str, action: str, paths: list[str]
) -> tuple[dict[str, FieldSpec], list[str], bool]:
    """(spec per mapped path, required leaf paths of the action, whether layer (a) is complete for them).

    Type, format, enum and ``required_effective`` come from ``write_info_fields``; lengths, patterns and ranges
    from the leaf node itself.
    """
    frame = fields_for(doc, integration_type, integration_name, action)
    by_path = {row.field: row for row in frame.itertuples(index=False)}
    specs: dict[str, FieldSpec] = {}
    complete = True
    for path in paths:
        row = by_path.get(path)
        if row is None:
            specs[path] = FieldSpec(path)
            continue
        ftype = None if pd.isna(row.type) else str(row.type)
        if ftype is not None and "|" in ftype:
            ftype, complete = None, False
        node = leaf_node(doc, action, path) or {}
        extra = set(node) - HANDLED_KEYWORDS
        if ftype not in ("string", "integer", "number", "boolean") or extra:
            complete = False
        enum = tuple(row.enum) if isinstance(row.enum, list) and not is_placeholder_enum(row.enum) else ()
        specs[path] = FieldSpec(
            path=path,
            type=ftype,
            format=None if pd.isna(row.format) else str(row.format),
            enum=enum,
            max_length=node.get("maxLength") if isinstance(node.get("maxLength"), int) else None,
            pattern=node.get("pattern") if isinstance(node.get("pattern"), str) else None,
            minimum=node.get("minimum") if isinstance(node.get("minimum"), int | float) else None,
            maximum=node.get("maximum") if isinstance(node.get("maximum"), int | float) else None,
            required=bool(row.required_effective),
        )
    required = [str(r.field) for r in frame.itertuples(index=False) if r.required_effective]
    return specs, required, complete


def unknown_paths(
    doc: dict[str, Any], integration_type: str, integration_name: str, action: str, paths: list[str]
) -> list[str]:
    """Mapped paths the integration's schema does not have (its bodies may not carry them).

    A path under a free-form object (type object with no listed properties) is not unknown.
    """
    frame = fields_for(doc, integration_type, integration_name, action)
    known = set(frame["field"])
    free = {
        f
        for f, t in zip(frame["field"], frame["type"], strict=True)
        if (pd.isna(t) or t == "object") and not any(k.startswith(f + ".") for k in known)
    }
    out = []
    for path in paths:
        parts = path.split(".")
        if path in known or any(".".join(parts[:i]) in free for i in range(1, len(parts))):
            continue
        out.append(path)
    return out


def has_property(doc: dict[str, Any], action: str, name: str) -> bool:
    """Whether the action's body schema has the top-level property ``name`` (e.g. ``trackstar_tags``)."""
    try:
        return name in _properties(doc, find_operation(doc, action).schema)
    except KeyError:
        return False


# -- layer (a): pandera -------------------------------------------------------------------------------------


def integration_schema(specs: dict[str, FieldSpec], integration: str) -> pa.DataFrameSchema:
    """A pandera schema from an integration's write-info for the mapped columns present in a flat frame."""
    columns: dict[str, pa.Column] = {}
    for path, spec in specs.items():
        checks: list[pa.Check] = []
        if spec.enum:
            checks.append(pa.Check.isin(list(spec.enum), name=f"enum of {integration}"))
        if spec.max_length is not None and spec.type == "string":
            checks.append(pa.Check.str_length(max_value=spec.max_length, name=f"maxLength {spec.max_length}"))
        if spec.pattern is not None and spec.type == "string":
            checks.append(pa.Check.str_contains(spec.pattern, name=f"pattern {spec.pattern}"))
        if spec.minimum is not None and spec.type in ("integer", "number"):
            checks.append(pa.Check.ge(spec.minimum, name=f"minimum {spec.minimum}"))
        if spec.maximum is not None and spec.type in ("integer", "number"):
            checks.append(pa.Check.le(spec.maximum, name=f"maximum {spec.maximum}"))
        if not checks and not spec.required:
            continue
        columns[path] = pa.Column(None, checks=checks, nullable=not spec.required, required=False, name=path)
    return pa.DataFrameSchema(columns, name=integration, strict=False)


def run_schema(schema: pa.DataFrameSchema | type[pa.DataFrameModel], frame: pd.DataFrame) -> pd.DataFrame:
    """Validate lazily; the failure cases (``check, column, failure_case, index``), empty when all pass."""
    if isinstance(schema, type):
        # untyped (object) columns are fields the integration does not know: the body check reports them
        present = [c for c in frame.columns if c in BASE_COLUMNS and frame[c].dtype != object]
        frame = frame[present]
    elif not len(schema.columns):
        return empty_failures()
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        fc = exc.failure_cases
        out = pd.DataFrame(
            {
                "check": fc["check"].astype(str).to_numpy(),
                "column": fc["column"].astype(object).to_numpy(),
                "failure_case": fc["failure_case"].astype(object).to_numpy(),
                "index": fc["index"].astype(object).to_numpy(),
            }
        )
        return out
    return empty_failures()


def empty_failures() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in FAILURE_COLUMNS})


_CHECK_TEXT: list[tuple[re.Pattern[str], Callable[[re.Match[str], str], str]]] = [
    (re.compile(r"^not_nullable$"), lambda m, i: f"required by {i} but missing"),
    (re.compile(r"^greater_than_or_equal_to\((.*)\)$"), lambda m, i: f"must be >= {m.group(1)}"),
    (re.compile(r"^less_than_or_equal_to\((.*)\)$"), lambda m, i: f"must be <= {m.group(1)}"),
    (re.compile(r"^minimum (.*)$"), lambda m, i: f"must be >= {m.group(1)} ({i})"),
    (re.compile(r"^maximum (.*)$"), lambda m, i: f"must be <= {m.group(1)} ({i})"),
    (re.compile(r"^enum of (.*)$"), lambda m, i: f"not one of the values {m.group(1)} accepts"),
    (re.compile(r"^maxLength (\d+)$"), lambda m, i: f"longer than {m.group(1)} characters ({i})"),
    (re.compile(r"^pattern (.*)$"), lambda m, i: f"does not match the pattern {m.group(1)} ({i})"),
    (re.compile(r"^dtype\((.*)\)$"), lambda m, i: f"wrong type, expected {m.group(1)}"),
    (re.compile(r"^isin\(.*\)$", re.S), lambda m, i: f"not one of the values {i} accepts"),
    (re.compile(r"^str_length\((.*), (.*)\)$"), lambda m, i: f"longer than {m.group(2)} characters ({i})"),
    (
        re.compile(r"^str_contains\((.*)\)$", re.S),
        lambda m, i: f"does not match the pattern {m.group(1)} ({i})",
    ),
]


def check_reason(check: str, column: str, integration: str) -> str:
    """A pandera check name as a reason a user reads: ``line_items.quantity: must be >= 1``."""
    for pattern, text in _CHECK_TEXT:
        m = pattern.match(check)
        if m:
            return f"{column}: {text(m, integration)}"
    return f"{column}: failed {check}"


def failure_summary(failure_cases: pd.DataFrame, sample: int = 5) -> pd.DataFrame:
    """Counts per (check, column) with a sample of failing values and row indexes, largest first.

    Takes pandera's ``SchemaErrors.failure_cases`` (or any frame with ``check, column, failure_case, index``);
    the Dagster layer shows the result as asset-check metadata (a table, not a text blob).
    """
    if failure_cases is None or not len(failure_cases):
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in SUMMARY_COLUMNS}).astype(
            {"count": "int64"}
        )
    fc = failure_cases.copy()
    fc["check"] = fc["check"].astype(str)
    fc["column"] = fc["column"].astype(object).where(fc["column"].notna(), "<frame>").astype(str)
    rows = []
    for (check, column), grp in fc.groupby(["check", "column"], sort=False):
        head = grp.head(sample)
        cases = [_short(v) for v in head["failure_case"].tolist()]
        idx = [None if pd.isna(i) else i for i in head["index"].tolist()] if "index" in grp else []
        rows.append(
            {
                "check": check,
                "column": column,
                "count": len(grp),
                "failure_case": cases[0] if cases else None,
                "index": idx[0] if idx else None,
                "sample": [{"failure_case": c, "index": i} for c, i in zip(cases, idx, strict=False)],
            }
        )
    out = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    return out.sort_values("count", ascending=False, kind="stable").reset_index(drop=True)


def _short(value: Any, limit: int = 80) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- layer (b): bodies ----------------------------------------------------------------------------------------


@dataclass
class CheckOutcome:
    """A plain check result; the Dagster layer turns it into an ``AssetCheckResult``."""

    name: str
    passed: bool
    severity: str  # "WARN" or "ERROR"
    description: str
    failures: pd.DataFrame = field(default_factory=lambda: failure_summary(empty_failures()))
    metadata: dict[str, Any] = field(default_factory=dict)


#: (document digest, integration type, integration name, action) -> field table; least recently used dropped
_FIELDS: OrderedDict[tuple[str, str, str, str], pd.DataFrame] = OrderedDict()
FIELDS_CACHE_SIZE = 256


def validator_for(doc: dict[str, Any], action: str) -> BodyValidator:
    """The compiled body validator of (doc, action).

    One cache only: ``schema.validator.body_validator``'s (keyed by the document's content, so two equal
    documents share one compiled validator); the mapping keeps none of its own.
    """
    return body_validator(doc, action)


def fields_for(
    doc: dict[str, Any], integration_type: str, integration_name: str, action: str
) -> pd.DataFrame:
    """``schema.fields.write_info_fields`` of (doc, integration) for one action, computed once per document
    content (hundreds of connections of one integration, each with its own copy, share one table)."""
    key = (document_digest(doc), integration_type, integration_name, action)
    hit = _FIELDS.get(key)
    if hit is None:
        frame = write_info_fields(doc, integration_type, integration_name)
        hit = _FIELDS[key] = frame[frame["action"] == action].reset_index(drop=True)
        while len(_FIELDS) > FIELDS_CACHE_SIZE:
            _FIELDS.popitem(last=False)
    _FIELDS.move_to_end(key)
    return hit
