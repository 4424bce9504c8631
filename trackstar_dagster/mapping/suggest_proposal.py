"""A suggested mapping as a proposal to review: its ``MappingConfig``, its YAML with the evidence as comments,
and its dry run (how many records the proposal would make valid, and why the others are refused).

Why a module of its own: the matching (``suggest``) decides; this is what a user reads and feeds back. The
YAML is what a ``mapping.yaml`` file or a component's ``mapping:`` section holds, so it round-trips through
``MappingConfig.from_yaml`` unchanged; every line a reviewer should check carries a comment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.mapping.build import build_payloads
from trackstar_dagster.mapping.config import MappingConfig, Target

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


@dataclass
class DryRun:
    """What ``build_payloads`` makes of the proposal on a frame (nothing is sent)."""

    records: int
    valid: int
    rejected: int
    #: (field, reason, records refused for it), the most frequent first
    top_reasons: list[tuple[str, str, int]] = field(default_factory=list)

    def summary(self) -> str:
        share = self.valid / self.records if self.records else 0.0
        lines = [
            f"dry run: {self.valid} of {self.records} records valid ({share:.1%}), {self.rejected} rejected"
        ]
        lines += [f"  {n} x {fld}: {why}" for fld, why, n in self.top_reasons]
        return "\n".join(lines)


@dataclass
class MappingSuggestion:
    """A proposed mapping: ``fields`` (target path -> column) as ``MappingConfig`` takes them, a confidence
    (0..1) and the evidence per field, the required fields no column fits, the columns left out."""

    action: str
    integration_name: str
    connection: str
    key: str | list[str] | None
    fields: dict[str, str]
    confidence: dict[str, float]
    reasons: dict[str, str]
    required: list[str]
    unmatched_required: list[str]
    unmatched_optional: list[str]
    unused_columns: list[str]
    #: a column given to more than one field, where every name says so (``shipping_price`` -> two fields)
    shared_columns: dict[str, list[str]]
    key_reason: str = ""
    doc: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_config(self) -> MappingConfig:
        """The proposal as a ``MappingConfig`` (one fixed connection); ``ConfigError`` if it has no key or
        no field."""
        if self.key is None:
            raise ConfigError(
                "no column looks like the record's key: pass key= (the column(s) of one record)"
            )
        if not self.fields:
            raise ConfigError(f"no column matched any field of {self.integration_name} {self.action}")
        return MappingConfig(
            action=self.action, key=self.key, connection=self.connection, fields=dict(self.fields)
        )

    def to_yaml(self, under: str | None = None) -> str:
        """The mapping YAML a user writes (``mapping.yaml``), confidences and evidence as comments; ``under``
        nests it under that key (``"mapping"``: a component's ``defs.yaml`` section)."""
        text = render_yaml(self)
        if under is None:
            return text
        body = "\n".join(f"  {line}" if line else line for line in text.splitlines())
        return f"{under}:\n{body}\n"

    def dry_run(self, frame: pd.DataFrame, *, items: pd.DataFrame | None = None, top: int = 5) -> DryRun:
        """Build the proposal's payloads on ``frame`` against its write-info: the valid and refused counts."""
        return dry_run(self.to_config(), {self.connection: self.target()}, frame, items=items, top=top)

    def target(self) -> Target:
        return Target(self.connection, "wms", self.integration_name, self.doc)


def dry_run(
    config: MappingConfig,
    targets: Mapping[str, Target],
    frame: pd.DataFrame,
    *,
    items: pd.DataFrame | None = None,
    top: int = 5,
) -> DryRun:
    """A dry run's figures: records, valid, rejected, the ``top`` reasons (records refused per field and reason)."""
    batch = build_payloads(frame, config, targets, items=items)
    reasons: list[tuple[str, str, int]] = []
    if len(batch.rejects):
        per = batch.rejects.drop_duplicates(["connection", "key", "field", "reason"])
        counts = (
            per.groupby(["field", "reason"], sort=False).size().sort_values(ascending=False, kind="stable")
        )
        for (fld, why), n in counts.head(top).items():
            fld, why = str(fld), str(why)
            reasons.append((fld, why.removeprefix(f"{fld}: "), int(n)))
    return DryRun(batch.records, len(batch.payloads), batch.rejected_records, reasons)


def scalar(value: str) -> str:
    """A YAML scalar: plain where that reads back as the same string, else JSON-quoted (JSON is YAML)."""
    if _PLAIN.match(value) and value.casefold() not in _YAML_WORDS:
        return value
    return json.dumps(value, ensure_ascii=False)


def render_yaml(s: MappingSuggestion) -> str:
    """The proposal as mapping YAML: each line a reviewer should check, commented."""
    lines = [
        f"# Suggested by trackstar-dagster for {s.integration_name} {s.action}: review before use.",
        "# Confidence per field (0..1) and its evidence in the comments; a required field no column fits is",
        "# listed (commented out), never guessed.",
    ]
    if s.unused_columns:
        lines.append(f"# Columns left out (they fit no field): {', '.join(s.unused_columns)}")
    for column, fields in s.shared_columns.items():
        lines.append(f"# {column} feeds {len(fields)} fields ({', '.join(fields)}): each name says so")
    lines.append(f"action: {scalar(s.action)}")
    if s.key is None:
        key = '""  # no column looks like the key: set it'
    else:
        key = scalar(s.key) if isinstance(s.key, str) else "[" + ", ".join(scalar(k) for k in s.key) + "]"
    lines.append(f"key: {key}" + (f"  # {s.key_reason}" if s.key is not None and s.key_reason else ""))
    lines.append(f"connection: {scalar(s.connection)}")
    lines.append("fields:")
    width = max([len(scalar(f)) + len(scalar(c)) for f, c in s.fields.items()] or [0]) + 4
    for path, column in s.fields.items():
        pair = f"  {scalar(path)}: {scalar(column)}"
        need = "required" if path in s.required else "optional"
        lines.append(f"{pair:<{width}}  # {s.confidence[path]:.2f} {need}; {s.reasons[path]}")
    for path in s.unmatched_required:
        lines.append(f"  # {scalar(path)}:   # required, not matched: no column fits")
    if s.unmatched_optional:
        lines.append(f"# Optional fields not matched: {', '.join(s.unmatched_optional)}")
    return "\n".join(lines) + "\n"
