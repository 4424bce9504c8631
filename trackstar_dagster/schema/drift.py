"""Schema drift between two snapshots of write-info documents, so a newly required field fails before writes do.

Fields are compared per integration and action on their dotted path (rows of the same field from several
``oneOf`` branches count as one: required if any branch makes it effectively required, enum = union).
Integrations only in one snapshot, and actions new in an integration, are reported but are not breaking: a
field can only be *newly* required for a write that existed before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from trackstar_dagster.schema.fields import write_info_fields


def _enum_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _summarise(doc: dict[str, Any], integration: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(action, field) -> {type, required_effective, enum} for one document."""
    frame = write_info_fields(doc, "", integration)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for action, fld, typ, eff, enum in zip(
        frame["action"],
        frame["field"],
        frame["type"],
        frame["required_effective"],
        frame["enum"],
        strict=True,
    ):
        entry = out.setdefault(
            (action, fld), {"type": None if typ != typ else typ, "required_effective": False, "enum": {}}
        )
        entry["required_effective"] = entry["required_effective"] or bool(eff)
        for value in enum:
            entry["enum"].setdefault(_enum_key(value), value)
    return out


@dataclass
class DriftReport:
    """What changed between two snapshots; ``has_breaking`` when a field became required."""

    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    newly_required: list[dict[str, Any]] = field(default_factory=list)
    enum_changes: list[dict[str, Any]] = field(default_factory=list)
    integrations_added: list[str] = field(default_factory=list)
    integrations_removed: list[str] = field(default_factory=list)

    @property
    def has_breaking(self) -> bool:
        """A field became required: bodies built for the old document are now refused."""
        return bool(self.newly_required)

    @property
    def has_changes(self) -> bool:
        """Anything differs between the two snapshots."""
        return bool(
            self.added
            or self.removed
            or self.newly_required
            or self.enum_changes
            or self.integrations_added
            or self.integrations_removed
        )

    def to_metadata(self) -> dict[str, Any]:
        """Counts and lists as plain JSON-able values."""
        return {
            "has_breaking": self.has_breaking,
            "added_count": len(self.added),
            "removed_count": len(self.removed),
            "newly_required_count": len(self.newly_required),
            "enum_changes_count": len(self.enum_changes),
            "added": [dict(r) for r in self.added],
            "removed": [dict(r) for r in self.removed],
            "newly_required": [dict(r) for r in self.newly_required],
            "enum_changes": [dict(r) for r in self.enum_changes],
            "integrations_added": list(self.integrations_added),
            "integrations_removed": list(self.integrations_removed),
        }

    def to_markdown(self) -> str:
        """A short human summary, breaking changes first."""
        if not self.has_changes:
            return "No schema drift."
        lines: list[str] = []

        def table(title: str, rows: list[dict[str, Any]], extra: str | None = None) -> None:
            if not rows:
                return
            head = "| integration | action | field |" + (f" {extra} |" if extra else "")
            lines.extend(
                [f"### {title} ({len(rows)})", "", head, "|---|---|---|" + ("---|" if extra else "")]
            )
            for r in rows:
                cell = ""
                if extra == "change":
                    parts = []
                    if r["values_added"]:
                        parts.append("+ " + ", ".join(map(str, r["values_added"])))
                    if r["values_removed"]:
                        parts.append("- " + ", ".join(map(str, r["values_removed"])))
                    cell = f" {'; '.join(parts)} |"
                elif extra:
                    cell = f" {r.get(extra) or ''} |"
                lines.append(f"| {r['integration']} | {r['action']} | `{r['field']}` |{cell}")
            lines.append("")

        table("Newly required (breaking)", self.newly_required)
        table("Removed", self.removed)
        table("Added", self.added, "type")
        table("Enum changes", self.enum_changes, "change")
        if self.integrations_added:
            lines.append("Integrations added: " + ", ".join(self.integrations_added))
        if self.integrations_removed:
            lines.append("Integrations removed: " + ", ".join(self.integrations_removed))
        return "\n".join(lines).rstrip() + "\n"


def schema_drift(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> DriftReport:
    """Compare write-info documents (integration name -> document) of two snapshots."""
    report = DriftReport(
        integrations_added=sorted(set(new) - set(old)),
        integrations_removed=sorted(set(old) - set(new)),
    )
    for integration in sorted(set(old) & set(new)):
        before = _summarise(old[integration], integration)
        after = _summarise(new[integration], integration)
        old_actions = {action for action, _ in before}
        for key, entry in after.items():
            action, fld = key
            row = {"integration": integration, "action": action, "field": fld}
            prev = before.get(key)
            if prev is None:
                report.added.append(
                    {**row, "type": entry["type"], "required_effective": entry["required_effective"]}
                )
                if entry["required_effective"] and action in old_actions:
                    report.newly_required.append({**row, "was": "absent"})
                continue
            if entry["required_effective"] and not prev["required_effective"]:
                report.newly_required.append({**row, "was": "optional"})
            added = [v for k, v in entry["enum"].items() if k not in prev["enum"]]
            removed = [v for k, v in prev["enum"].items() if k not in entry["enum"]]
            if added or removed:
                report.enum_changes.append({**row, "values_added": added, "values_removed": removed})
        for key, entry in before.items():
            if key not in after:
                action, fld = key
                report.removed.append(
                    {
                        "integration": integration,
                        "action": action,
                        "field": fld,
                        "type": entry["type"],
                        "was_required": entry["required_effective"],
                    }
                )
    return report
