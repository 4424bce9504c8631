"""The slow path: every ``Problem`` of a body the fast path refused, with a message a person can act on.

Runs only when the generated code (``codegen.py``) said "invalid", so it can afford to interpret the
``Node`` tree and report everything (all missing fields, every bad value), naming each by its dotted path.
Subtrees the fast functions accept are skipped at compiled speed. For ``anyOf``/``oneOf`` with no passing
branch it reports the branch that came closest (fewest problems), since listing all would bury the fix.
"""

from __future__ import annotations

import numbers
from typing import Any

from trackstar_dagster.schema.nodes import NO_CONST, Node
from trackstar_dagster.schema.rules import (
    FORMAT_CHECKS,
    Problem,
    in_enum,
    is_type,
    is_unique,
    join_path,
    json_equal,
    multiple_ok,
    nl_self,
    null_paths,
    short,
    type_name,
)


def _explain_slot(n: Node | None, x: Any, path: str, out: list[Problem]) -> None:
    """A value found inside an object or array: null-like itself, null-like inside, or against ``n``."""
    if nl_self(x):
        out.append(Problem(path, f"null-like value {short(x)} is not allowed: leave the field out"))
        return
    if n is None or n.any:
        out += [
            Problem(p, "null-like value is not allowed: leave the field out") for p in null_paths(x, path)
        ]
        return
    if not n.fast(x):  # valid subtrees are skipped at compiled speed
        explain(n, x, path, out)


def explain(n: Node, v: Any, path: str, out: list[Problem]) -> None:
    """Append every problem of ``v`` (already known not null-like itself) against node ``n``."""
    if n.never:
        out.append(Problem(path, "no value is allowed here"))
        return
    if n.any:
        out += [
            Problem(p, "null-like value is not allowed: leave the field out") for p in null_paths(v, path)
        ]
        return
    if n.types and not any(is_type(v, t) for t in n.types):
        out.append(Problem(path, f"expected {' or '.join(n.types)}, got {type_name(v)} {short(v)}"))
        return
    if isinstance(v, dict):
        _explain_object(n, v, path, out)
    elif isinstance(v, list):
        if n.min_items is not None and len(v) < n.min_items:
            out.append(Problem(path, f"needs at least {n.min_items} items, has {len(v)}"))
        if n.max_items is not None and len(v) > n.max_items:
            out.append(Problem(path, f"allows at most {n.max_items} items, has {len(v)}"))
        for i, x in enumerate(v):
            _explain_slot(n.items, x, join_path(path, i), out)
        if n.unique and not is_unique(v):
            out.append(Problem(path, "items must be unique"))
    elif isinstance(v, str):
        if n.min_len is not None and len(v) < n.min_len:
            out.append(Problem(path, f"shorter than {n.min_len} characters"))
        if n.max_len is not None and len(v) > n.max_len:
            out.append(Problem(path, f"longer than {n.max_len} characters ({len(v)})"))
        if n.pattern is not None and n.pattern.search(v) is None:
            out.append(Problem(path, f"{short(v)} does not match pattern {n.pattern.pattern!r}"))
        if n.format is not None and not FORMAT_CHECKS[n.format](v):
            out.append(Problem(path, f"{short(v)} is not an ISO 8601 {n.format}"))
    elif isinstance(v, numbers.Number) and v.__class__ is not bool:
        for attr, fails, word in (
            ("minimum", lambda a, b: a < b, "less than"),
            ("maximum", lambda a, b: a > b, "greater than"),
            ("xminimum", lambda a, b: a <= b, "not greater than"),
            ("xmaximum", lambda a, b: a >= b, "not less than"),
        ):
            bound = getattr(n, attr)
            if bound is not None and fails(v, bound):
                out.append(Problem(path, f"{v!r} is {word} {bound!r}"))
        if n.multiple_of is not None and not multiple_ok(v, n.multiple_of):
            out.append(Problem(path, f"{v!r} is not a multiple of {n.multiple_of!r}"))
    if n.enum is not None and not in_enum(v, n.enum):
        shown = ", ".join(short(e, 30) for e in n.enum[:10]) + (", ..." if len(n.enum) > 10 else "")
        out.append(Problem(path, f"{short(v)} is not one of [{shown}]"))
    if n.const is not NO_CONST and not json_equal(v, n.const):
        out.append(Problem(path, f"must be {short(n.const)}"))
    for b in n.all_of:
        if not b.fast(v):
            explain(b, v, path, out)
    if n.any_of and not any(b.fast(v) for b in n.any_of):
        _explain_branches(n.any_of, v, path, out, "any")
    if n.one_of:
        passing = [b for b in n.one_of if b.fast(v)]
        if not passing:
            _explain_branches(n.one_of, v, path, out, "exactly one")
        elif len(passing) > 1:
            out.append(
                Problem(
                    path,
                    "matches more than one of "
                    f"{', '.join(b.label for b in passing)}: give the fields of only one",
                )
            )
    if n.not_ is not None and n.not_.fast(v):
        out.append(Problem(path, f"must not match {n.not_.label}"))


def _explain_branches(branches: list[Node], v: Any, path: str, out: list[Problem], how: str) -> None:
    """No branch passes: say so, then the problems of the branch that came closest."""
    labels = ", ".join(b.label for b in branches)
    best: list[Problem] | None = None
    best_label = ""
    for b in branches:
        found: list[Problem] = []
        explain(b, v, path, found)
        if best is None or len(found) < len(best):
            best, best_label = found, b.label
    out.append(Problem(path, f"must match {how} of: {labels}; it matches none"))
    out += [Problem(p.field, f"({best_label}) {p.message}") for p in best or []]


def _explain_object(n: Node, v: dict[str, Any], path: str, out: list[Problem]) -> None:
    """Missing required fields, property counts, then every field against its schema (or as not accepted)."""
    for r in n.required:
        if r not in v:
            out.append(Problem(join_path(path, r), "required field is missing"))
    if n.min_props is not None and len(v) < n.min_props:
        out.append(Problem(path, f"needs at least {n.min_props} fields"))
    if n.max_props is not None and len(v) > n.max_props:
        out.append(Problem(path, f"allows at most {n.max_props} fields"))
    for k, x in v.items():
        sub = join_path(path, k)
        if k in n.props:
            _explain_slot(n.props[k], x, sub, out)
            continue
        matched = False
        for rx, child in n.pattern_props:
            if rx.search(k) is not None:
                matched = True
                _explain_slot(child, x, sub, out)
        if matched:
            continue
        if n.additional_false:
            out.append(Problem(sub, "field is not accepted here (not in the integration's schema)"))
        else:
            _explain_slot(n.additional, x, sub, out)
