"""Warehouse rows -> Trackstar write bodies: a declarative mapping, null dropping, validation and rejects.

``build_payloads`` is a dry run by itself (it never writes): every input record (one per key and connection)
ends up either in ``payloads`` (key, connection, action, body JSON, body hash, source rows, key tag) or in
``rejects`` (with the field and the reason), never both, never neither.

How a body is made, and the decisions behind it:

- the mapping is checked against the targets' write-info schemas before any row is read: a target (mapped
  field, constant, connection constant) no connection's schema has is a typo, a ``ConfigError`` naming it and
  the closest real field; one only some schemas lack is left out of those connections' bodies (mapped value
  and constant alike, ``unknown_fields: drop``, listed in ``PayloadBatch.dropped_fields``) or rejects their
  records (``reject``). Missing columns, and columns the mapping reads that the frame has twice, are
  ``ConfigError``s too;
- nothing a cell holds raises: a value its field cannot take (``2**70``, ``1e19`` into an integer, a lone
  surrogate, bytes) rejects its own record, the reject showing the source cell as it was (``"NULL"``, not NaN);
- header fields come from the record's rows (the first non-null value); two different non-null values of one
  header field across the rows of a record reject the whole record, naming the field;
- items (``items_path``, ``line_items`` for orders) come one per row; an item whose fields are all empty is
  left out; a row that fails any check rejects its whole record (a record is never sent with an item missing);
- constants fill fields the mapping leaves empty: a mapped non-null value wins over a constant, and a
  connection's constants win over the general ones (constants are defaults, source data is the truth);
- null-like values never reach a body: values are cleaned per column (the one rule in ``nulls``), objects and
  lists left empty are left out, so every body equals ``drop_empty_body(body)``;
- a record's identity is ``keys``' (the one place it is defined): several key columns make one key with
  ``keys.encode_key`` (``|`` and ``\\`` inside a part escaped, so ``("a|b", "c")`` and ``("a", "b|c")`` stay
  two records); a key ``keys.key_problem`` refuses (a NUL character) rejects that record only;
- every body carries ``key_tag(action, key, tag_namespace)`` in ``trackstar_tags`` when ``key_tag`` is on and
  the target schema has that field; the payloads' ``tag`` column holds that exact text (null where a body has
  none). Connections without it are listed in ``PayloadBatch.untagged_connections`` and logged as a warning
  once per build: for them an unknown write outcome cannot be proven and a lost ledger cannot be rebuilt.
  Without ``tag_namespace`` the first release's tags (and so its bodies) are produced byte for byte.

Speed: everything per column is vectorised (null masks, coercion, pandera checks); bodies are built by
pre-compiled per-shape builders over pre-extracted column arrays; one body per shape goes through
``body_validator`` (layer (a) covers every value-level rule, see ``validation``), all bodies of a failing shape.

The stages, each a module with explicit inputs and outputs, data flowing one way (rows -> records ->
columns -> bodies -> rejects and the batch): ``plan`` (the config checked against the targets, before any
row is read) -> ``records`` (join, keys, routing; ``screen``) -> ``columns`` (coercion, conflicts, constants)
-> ``row_checks`` (layer (a), pandera) -> ``bodies`` (templates per shape, hashes) -> ``body_checks`` (layer
(b)). One ``Rejects`` collector is handed to every stage that refuses; this module runs them in order and
assembles the ``PayloadBatch``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Mapping

import numpy as np
import pandas as pd

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.base.redaction import redacted_logger
from trackstar_dagster.mapping.bodies import BuiltBodies, build_bodies
from trackstar_dagster.mapping.body_checks import check_bodies
from trackstar_dagster.mapping.cells import obj_array
from trackstar_dagster.mapping.coercion import ColumnCodes
from trackstar_dagster.mapping.columns import build_columns
from trackstar_dagster.mapping.config import MappingConfig, PayloadBatch, Target, constants_for
from trackstar_dagster.mapping.plan import OtherTargets, Plan, make_plan
from trackstar_dagster.mapping.records import Records, index_records, join, screen
from trackstar_dagster.mapping.rejects import Rejects
from trackstar_dagster.mapping.row_checks import check_rows

logger = redacted_logger(__name__)

PAYLOAD_COLUMNS = ("key", "connection", "action", "body", "body_hash", "source_rows", "tag")
REJECT_COLUMNS = ("key", "connection", "source_rows", "field", "reason", "value")


def build_payloads(
    frame: pd.DataFrame,
    config: MappingConfig,
    targets: Mapping[str, Target],
    *,
    items: pd.DataFrame | None = None,
    validate_bodies: str = "shapes",
    others: OtherTargets | None = None,
) -> PayloadBatch:
    """Map, clean and validate rows into write bodies (a dry run: nothing is sent).

    ``items``: an optional line-items table joined on the key columns (then ``frame`` has one row per record
    and ``source_rows`` are positions in ``frame``). ``validate_bodies``: ``"shapes"`` (one body per shape,
    every body of a failing shape) or ``"all"``. Mapped columns that are missing raise ``ConfigError`` before
    any row is read. ``others``: for a run of some of the mapping's connections, the targets of the rest (see
    ``plan.OtherTargets``): a target field only they have is theirs, not a typo.
    """
    if validate_bodies not in ("shapes", "all"):
        raise ConfigError("validate_bodies must be 'shapes' or 'all'")
    # Millions of short-lived containers and no cycles: the cyclic GC would only rescan them, over and over.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _run(frame, config, targets, items, validate_bodies, others)
    finally:
        if was_enabled:
            gc.enable()


class _Stopwatch:
    """Seconds per stage, for ``PayloadBatch.timings`` (profiling)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._t, 4)
        self._t = now


def _run(
    frame: pd.DataFrame,
    config: MappingConfig,
    targets: Mapping[str, Target],
    items: pd.DataFrame | None,
    validate_bodies: str,
    others: OtherTargets | None = None,
) -> PayloadBatch:
    """The stages in order: plan, records, columns, layer (a), bodies, layer (b), then the batch."""
    plan = make_plan(frame, items, config, targets, others)
    work, src = join(frame, items, config, plan)
    watch = _Stopwatch()
    codes_of = ColumnCodes(work)
    records = index_records(work, src, config, plan, codes_of)
    rejects = Rejects(records)
    alive, refusals = screen(records, config)
    for refusal in refusals:
        rejects.reject(*refusal)
    watch.lap("keys and routing")
    if plan.groups:
        columns = build_columns(config, plan, records, codes_of, rejects, watch.lap)
        check_rows(config, plan, records, columns, rejects)
        watch.lap("pandera")
        good = np.flatnonzero(alive & ~rejects.refused())
        built = build_bodies(config, plan, records, columns, good, watch.lap)
        watch.lap("bodies: hashes")
        ok = check_bodies(built, plan, records, rejects, validate_bodies)
        watch.lap("body validation")
    else:  # no connection to route to (open routing, rows naming none configured): every record refused
        built = BuiltBodies(
            np.zeros(0, np.intp), [], [], [], np.zeros(0, np.intp), np.zeros(0, np.int64), True
        )
        ok = np.zeros(0, dtype=bool)
    payloads = _payloads(built, ok, records, plan.action, watch)
    rejected = rejects.frame()
    checks = rejects.checks(len(payloads), [g.integration_name for g in plan.groups], config.key_columns)
    watch.lap("rejects and checks")
    return PayloadBatch(
        payloads=payloads,
        rejects=rejected,
        checks=checks,
        records=records.R,
        timings=watch.timings,
        dropped_fields=_dropped_fields(config, plan),
        untagged_connections=_untagged_connections(config, plan),
    )


def _payloads(
    built: BuiltBodies,
    ok: np.ndarray,
    records: Records,
    action: str,
    watch: _Stopwatch,
) -> pd.DataFrame:
    """The payloads frame (``PAYLOAD_COLUMNS``) of the bodies that passed: their text and hash as built."""
    good = built.good[ok]
    keep = np.flatnonzero(ok)
    bodies, hashes, tags = built.bodies, built.hashes, built.tags
    if len(keep) < len(bodies):
        bodies = [bodies[i] for i in keep.tolist()]
        hashes = [hashes[i] for i in keep.tolist()]
        tags = [tags[i] for i in keep.tolist()]
    watch.lap("payloads: prepare")
    payloads = pd.DataFrame(
        {
            "key": pd.Series(records.rec_key[good], dtype=object).astype("str"),
            "connection": pd.Series(records.rec_conn[good], dtype=object).astype("str"),
            "action": pd.Series(np.full(len(good), action, dtype=object)).astype("str"),
            "body": pd.Series(obj_array(bodies), dtype=object).astype("str"),
            "body_hash": pd.Series(obj_array(hashes), dtype=object).astype("str"),
            "source_rows": pd.Series(records.source_rows(good), dtype=object),
            "tag": pd.Series(obj_array(tags), dtype=object).astype("str"),
        }
    )
    watch.lap("payloads frame")
    return payloads


def _dropped_fields(config: MappingConfig, plan: Plan) -> dict[str, list[str]]:
    """Per connection, the mapped fields and its constants that its schema lacks (left out of its bodies)."""
    dropped = {}
    for name, gi in plan.conn_group.items():
        unknown = plan.groups[gi].unknown
        if unknown:
            used = [*config.fields, *constants_for(config, name)]
            if left_out := sorted({p for p in used if p in unknown}):
                dropped[name] = left_out
    return dropped


def _untagged_connections(config: MappingConfig, plan: Plan) -> list[str]:
    """Connections whose bodies carry no key tag, warned about once per build."""
    untagged = [name for name in plan.connections if not plan.tagged(config, name)]
    if untagged:
        why = "key_tag is off" if not config.key_tag else "their integration's schema has no trackstar_tags"
        logger.warning(
            "Bodies for connection(s) %s carry no key tag (%s): for them an unknown write outcome (a timeout, "
            "a lost response) cannot be proven from Trackstar, and a lost ledger cannot be rebuilt.",
            ", ".join(untagged),
            why,
        )
    return untagged
