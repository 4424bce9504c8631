"""Layer (b) of one build: finished bodies through the write-info ``body_validator``, one per shape.

Why a module of its own: layer (a) (``row_checks``) covers every value-level rule, so bodies of one shape
(header template x set of item templates) get one answer; this stage validates one body per shape, every
body of a failing shape (or of a schema layer (a) cannot cover fully), and refuses failures per field.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd

from trackstar_dagster.mapping import validation as v
from trackstar_dagster.mapping.bodies import BuiltBodies
from trackstar_dagster.mapping.plan import Plan
from trackstar_dagster.mapping.previews import mask_body
from trackstar_dagster.mapping.records import Records
from trackstar_dagster.mapping.rejects import Rejects, truncate


def _value_at(body: Any, dotted: str) -> Any:
    """The value a problem names (a dotted path, list positions as digits): what its reject shows."""
    node = body
    for seg in dotted.split("."):
        if isinstance(node, dict):
            node = node.get(seg)
        elif isinstance(node, list) and seg.isdigit() and int(seg) < len(node):
            node = node[int(seg)]
        else:
            return None
    return node


def check_bodies(built: BuiltBodies, plan: Plan, records: Records, rejects: Rejects, mode: str) -> np.ndarray:
    """Layer (b): one body per shape through ``body_validator``, every body of a failing shape (all of them
    with ``mode == "all"``). Returns the mask over ``built.good`` of bodies that pass; the others are refused."""
    good = built.good
    G = len(good)
    ok = np.ones(G, dtype=bool)
    if not G:
        return ok
    groups = records.rec_group[good]
    shape_ids, _ = pd.factorize(built.item_shape)
    sig, _ = pd.factorize(built.h_combo.astype(np.int64) * (int(shape_ids.max(initial=0)) + 1) + shape_ids)
    validators = [v.validator_for(g.doc, plan.action) for g in plan.groups]
    to_check: list[np.ndarray] = []
    full_groups = {
        gi for gi, g in enumerate(plan.groups) if not g.complete or not built.shapes_ok or mode == "all"
    }
    if full_groups:
        to_check.append(np.flatnonzero(np.isin(groups, list(full_groups))))
    rest = np.flatnonzero(~np.isin(groups, list(full_groups))) if full_groups else np.arange(G)
    if len(rest):
        reps = rest[np.unique(sig[rest], return_index=True)[1]]
        failing = []
        for i in reps.tolist():
            body = orjson.loads(built.bodies[i])
            if validators[groups[i]](body):
                failing.append(sig[i])
        if failing:
            to_check.append(rest[np.isin(sig[rest], failing)])
    bodies = built.bodies
    problems_seen: list[pd.DataFrame] = []
    for idx in to_check:
        for i in idx.tolist():
            body = orjson.loads(bodies[i])
            problems = validators[groups[i]](body)
            if not problems:
                continue
            ok[i] = False
            rec = int(good[i])
            for prob in problems:
                fld = str(getattr(prob, "field", "") or "(body)")
                msg = str(getattr(prob, "message", prob))
                val = _value_at(body, fld)
                rejects.reject(rec, fld, f"{fld}: {msg}", val)
                problems_seen.append(
                    pd.DataFrame(
                        {
                            "check": [f"{fld}: {msg}"],
                            "column": [fld],  # an object's personal leaves masked
                            "failure_case": [
                                truncate(mask_body(val, fld) if isinstance(val, dict | list) else val)
                            ],
                            "index": [int(records.src_sorted[records.starts[rec]])],
                        }
                    )
                )
    if problems_seen:
        rejects.add_failures("bodies", *problems_seen)
    return ok
