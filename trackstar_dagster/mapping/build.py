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

This module is the public surface only (types re-exported from ``mapping_config``, ``build_payloads``).
The work is split by job, imports flowing one way: ``payload_builder`` (config checks, keys and routing,
the run) -> ``payload_columns`` (coercion, conflicts, constants, pandera) and ``payload_bodies`` (body
templates per shape, layer (b)) -> ``payload_rejects`` (rejects, check outcomes), ``body_templates`` (JSON
text) and ``mapping_config`` (config, target, batch, key tag).
"""

from __future__ import annotations

import gc
from collections.abc import Mapping

import pandas as pd

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.mapping.config import MappingConfig, PayloadBatch, Target
from trackstar_dagster.mapping.engine import _Build

PAYLOAD_COLUMNS = ("key", "connection", "action", "body", "body_hash", "source_rows", "tag")
REJECT_COLUMNS = ("key", "connection", "source_rows", "field", "reason", "value")


def build_payloads(frame: pd.DataFrame, config: MappingConfig, targets: Mapping[str, Target], *,
                   items: pd.DataFrame | None = None, validate_bodies: str = "shapes") -> PayloadBatch:
    """Map, clean and validate rows into write bodies (a dry run: nothing is sent).

    ``items``: an optional line-items table joined on the key columns (then ``frame`` has one row per record
    and ``source_rows`` are positions in ``frame``). ``validate_bodies``: ``"shapes"`` (one body per shape,
    every body of a failing shape) or ``"all"``. Mapped columns that are missing raise ``ConfigError`` before
    any row is read.
    """
    if validate_bodies not in ("shapes", "all"):
        raise ConfigError("validate_bodies must be 'shapes' or 'all'")
    # Millions of short-lived containers and no cycles: the cyclic GC would only rescan them, over and over.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _Build(frame, config, targets, items, validate_bodies).run()
    finally:
        if was_enabled:
            gc.enable()
