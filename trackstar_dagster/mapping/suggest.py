"""``suggest_mapping``: a source table and a write-info document -> a proposed mapping, to review.

Each field of the action's body (required and optional, nested ones as ``ship_to_address.city`` and
``line_items.sku``) is matched to the most likely column: by name (``suggest_names``) and by values
(``suggest_values``), their product weighted so values can overrule a name (a ``delivery_date`` of notes does
not feed a date field) but never make one up. How the choice is made:

- a pair's confidence is ``name x (0.35 + 0.65 x values)``; a column with no name evidence is considered only
  when its values are unmistakable and the field expects them (emails into an email field), at half weight;
- a header field (outside the items array) is not fed by a column whose values vary within one record's rows
  (that would be a conflict reject on every multi-line record);
- pairs are taken best first, one column per field and one field per column; below ``MIN_CONFIDENCE`` nothing
  is proposed: a column that fits nothing is left out, a required field nothing fits is listed;
- a column already taken feeds a second field only when its name says so as clearly (a synonym or better,
  values fitting: ``shipping_price`` -> ``shipping_price`` and ``total_shipping``): ``shared_columns``;
- a field the schema's description calls deprecated gets a tenth less, and says so;
- the key is the column named as the resource's id (``order_id``, ``id``, ``order_number``, ...), unless given.

Pure: no Dagster, no HTTP. The proposal (``MappingSuggestion``) gives the ``MappingConfig``, its YAML and a
dry run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.mapping.suggest_names import field_reading, name_score, words
from trackstar_dagster.mapping.suggest_proposal import MappingSuggestion
from trackstar_dagster.mapping.suggest_values import (
    EXPECTED_KIND,
    Profile,
    profile,
    strong_kind,
    value_score,
)
from trackstar_dagster.schema.fields import ADDITIONAL_KEY, write_info_fields
from trackstar_dagster.schema.openapi import find_operation, singular

#: below this a pair is not proposed
MIN_CONFIDENCE = 0.5
#: a second field for a column already taken: a name at least this clear, values at least this good
SHARED_NAME, SHARED_VALUES = 0.9, 0.8
#: share of multi-row records over which a column may vary and still feed a header field (dirt happens)
HEADER_VARIES = 0.05
#: fields the library fills itself
LIBRARY_FIELDS = frozenset({"trackstar_tags"})


@dataclass(frozen=True)
class _Pair:
    field: str
    column: str
    confidence: float
    name: float
    values: float
    why: str


def suggest_mapping(
    frame: pd.DataFrame,
    write_info: dict[str, Any],
    action: str = "create_order",
    *,
    key: str | list[str] | None = None,
    connection: str | None = None,
    integration_name: str | None = None,
    sample_rows: int = 2000,
) -> MappingSuggestion:
    """Propose a mapping of ``frame``'s columns onto ``action``'s fields of a write-info document.

    ``frame``: the source table (or a sample of it: the first ``sample_rows`` rows are read, keep a record's
    rows together). ``key``: the record's key column(s), else guessed. ``connection``: the connection the
    proposal writes to (default: ``integration_name``, else ``default``); ``integration_name``: the
    document's integration, for messages. Returns a ``MappingSuggestion``: ``fields`` as
    ``MappingConfig`` takes them, ``confidence`` and ``reasons`` per field, ``unmatched_required``,
    ``unused_columns``; ``to_config()``, ``to_yaml()``, ``dry_run(frame)``.
    """
    try:
        find_operation(write_info, action)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from exc
    name = integration_name or "integration"
    specs = _field_specs(write_info, action, name)
    sample = frame.iloc[:sample_rows]
    names = [str(c) for c in frame.columns]
    columns = [c for c in names if names.count(c) == 1]  # a name the frame has twice cannot be read as one
    profiles = {c: profile(sample[c], sample_rows) for c in columns}
    key_cols, key_reason = _choose_key(columns, profiles, action, key)
    if key_cols:
        _mark_variation(sample, key_cols, profiles)
    pairs = [p for spec in specs for c in columns if (p := _pair(spec, profiles[c])) is not None]
    chosen, shared = _assign(pairs, specs)
    required = [s["field"] for s in specs if s["required_effective"]]
    order = [s["field"] for s in specs]
    fields = {f: chosen[f].column for f in order if f in chosen}
    used = set(fields.values()) | set(key_cols)
    return MappingSuggestion(
        action=action,
        integration_name=name,
        connection=connection or integration_name or "default",
        key=(key_cols[0] if len(key_cols) == 1 else key_cols) if key_cols else None,
        fields=fields,
        confidence={f: chosen[f].confidence for f in fields},
        reasons={f: chosen[f].why for f in fields},
        required=required,
        unmatched_required=[f for f in required if f not in fields],
        unmatched_optional=[f for f in order if f not in fields and f not in required],
        unused_columns=[c for c in dict.fromkeys(names) if c not in used],
        shared_columns=shared,
        key_reason=key_reason,
        doc=write_info,
    )


def _field_specs(doc: dict[str, Any], action: str, name: str) -> list[dict[str, Any]]:
    """The fields a column can feed: scalars at the top, in objects, or in the one items array."""
    frame = write_info_fields(doc, "wms", name)
    frame = frame[frame["action"] == action]
    rows: list[dict[str, Any]] = [
        {str(k): (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]
    types: dict[str, str] = {str(r["field"]): str(r["type"] or "") for r in rows}
    arrays = [f for f, t in types.items() if t == "array" and "." not in f and f not in LIBRARY_FIELDS]
    items = (
        "line_items"
        if "line_items" in arrays
        else max(arrays, key=lambda a: _count_under(types, a), default=None)
    )
    out = []
    for r in rows:
        path = str(r["field"])
        kind, parents = types[path], path.split(".")[:-1]
        if path in LIBRARY_FIELDS or ADDITIONAL_KEY in path.split(".") or kind in ("object", "array", ""):
            continue
        in_array = any(types.get(".".join(parents[: i + 1])) == "array" for i in range(len(parents)))
        if in_array and (parents[0] != items or len(parents) > 1 or "object" in kind):
            continue  # inside another array, or an array nested in the items
        out.append(r)
    return out


def _count_under(types: dict[str, str], array: str) -> int:
    return sum(1 for f in types if f.startswith(f"{array}."))


def _choose_key(
    columns: list[str], profiles: dict[str, Profile], action: str, key: str | list[str] | None
) -> tuple[list[str], str]:
    """The record's key column(s): as given, else the column named as the resource's id."""
    if key is not None:
        given = [key] if isinstance(key, str) else list(key)
        missing = [k for k in given if k not in columns]
        if missing:
            raise ConfigError(f"key column(s) {missing} not in the frame")
        return given, "given"
    resource = singular(action.split("_", 1)[1]) if "_" in action else action
    ranks = {
        (resource, "id"): 1.0, (resource, "key"): 0.9, (resource, "number"): 0.85, (resource, "no"): 0.85,
        (resource, "num"): 0.85, ("id",): 0.8, (resource, "ref"): 0.6, ("reference", "id"): 0.6,
        ("external", "id"): 0.6,
    }  # fmt: skip
    best: tuple[float, str] | None = None
    most = max((q.present for q in profiles.values()), default=0)
    for c in columns:
        rank = ranks.get(words(c))
        if rank is None or profiles[c].present < 0.95 * most:  # a key is (nearly) never empty
            continue
        if best is None or rank > best[0]:
            best = (rank, c)
    if best is None:
        return [], ""
    return [best[1]], f"named as the {resource}'s id"


def _mark_variation(sample: pd.DataFrame, key: list[str], profiles: dict[str, Profile]) -> None:
    """Per column, the share of multi-row records over which it holds more than one value."""
    sizes = sample.groupby(key, sort=False, dropna=False).size()
    multi = int((sizes > 1).sum())
    if multi == 0:
        return
    for c, p in profiles.items():
        if c in key:
            continue
        values = sample[c].astype(object).where(sample[c].notna(), None).astype(str)
        distinct = values.groupby([sample[k] for k in key], sort=False, dropna=False).nunique()
        p.varies_within_key = float((distinct > 1).sum()) / multi


def _pair(spec: dict[str, Any], p: Profile) -> _Pair | None:
    """The evidence for one column feeding one field, or None when there is none."""
    path = spec["field"]
    leaf = field_reading(path).leaf
    name, why_name = name_score(p.column, path)
    values, why_values = value_score(p, spec, leaf)
    if name > 0:
        confidence = name * (0.35 + 0.65 * values)
        why = f"{why_name}; {why_values}"
    elif (kind := EXPECTED_KIND.get(leaf)) is not None and strong_kind(p) == kind:
        confidence, why = 0.5 * values, f"values only: {why_values}"
    else:
        return None
    if not _is_item(path) and p.varies_within_key is not None and p.varies_within_key > HEADER_VARIES:
        confidence *= 0.2
        why += f"; varies within {p.varies_within_key:.0%} of multi-row records (a line-item column)"
    if "deprecated" in str(spec.get("description") or "").casefold():
        confidence *= 0.9
        why += "; the schema calls the field deprecated"
    if confidence <= 0:
        return None
    return _Pair(path, p.column, round(min(confidence, 1.0), 3), name, values, why)


def _is_item(path: str) -> bool:
    return field_reading(path).context == "item" or path.split(".")[0] in ("line_items", "items")


def _assign(pairs: list[_Pair], specs: list[dict[str, Any]]) -> tuple[dict[str, _Pair], dict[str, list[str]]]:
    """Best pairs first, one column per field and field per column; then the clearly shared columns."""
    required = {s["field"] for s in specs if s["required_effective"]}
    rank = {s["field"]: i for i, s in enumerate(specs)}
    ordered = sorted(
        pairs, key=lambda p: (-(p.confidence + (0.02 if p.field in required else 0)), rank[p.field])
    )
    chosen: dict[str, _Pair] = {}
    taken: dict[str, str] = {}
    for p in ordered:
        if p.confidence < MIN_CONFIDENCE or p.field in chosen or p.column in taken:
            continue
        chosen[p.field], taken[p.column] = p, p.field
    shared: dict[str, list[str]] = {}
    for p in ordered:
        if p.field in chosen or p.column not in taken or p.confidence < MIN_CONFIDENCE:
            continue
        if p.name >= SHARED_NAME and p.values >= SHARED_VALUES:
            chosen[p.field] = p
            shared.setdefault(p.column, [taken[p.column]]).append(p.field)
    return chosen, shared
