"""Masked previews of payloads and rejects for Dagster metadata (which is kept forever).

Names, companies, addresses, emails and phone numbers are masked in every preview; postal codes keep their
first two characters (enough to see a region, not an address). Reject reasons never hold values (those are in
the ``value`` column), so they are shown as they are; values of personal fields are masked.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

#: Field names (the last segment of a dotted path) whose values are personal data.
MASKED_FIELDS = frozenset(
    {
        "full_name",
        "first_name",
        "last_name",
        "name",
        "company",
        "address1",
        "address2",
        "address3",
        "email",
        "email_address",
        "phone",
        "phone_number",
        "attention",
        "contact_name",
    }
)
PARTIAL_FIELDS = frozenset({"postal_code", "zip", "zip_code"})
MASK = "***"


def mask_value(field: str, value: Any) -> Any:
    """The preview form of one value of ``field`` (a dotted path or a bare name)."""
    leaf = str(field).rsplit(".", 1)[-1]
    if value is None:
        return None
    if leaf in MASKED_FIELDS:
        return MASK
    if leaf in PARTIAL_FIELDS:
        text = str(value)
        return text[:2] + MASK if len(text) > 2 else MASK
    return value


def mask_body(body: Any, path: str = "") -> Any:
    """A copy of a body with every personal value masked, at any depth."""
    if isinstance(body, dict):
        out = {}
        for k, val in body.items():
            sub = f"{path}.{k}" if path else str(k)
            out[k] = mask_body(val, sub) if isinstance(val, dict | list) else mask_value(sub, val)
        return out
    if isinstance(body, list):
        return [mask_body(x, path) if isinstance(x, dict | list) else mask_value(path, x) for x in body]
    return mask_value(path, body)


def _cell(value: Any, width: int) -> str:
    if isinstance(value, list | tuple):
        value = ", ".join(map(str, value))
    text = "" if value is None or (isinstance(value, float) and value != value) else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown_table(frame: pd.DataFrame, *, max_rows: int = 50, width: int = 120) -> str:
    """A markdown table of the first ``max_rows`` rows, cells cut at ``width`` (no ``tabulate`` needed).

    Metadata is kept forever and rendered by the UI: keep it small.
    """
    if frame.empty:
        return "_(empty)_"
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.head(max_rows).itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, width) for v in row) + " |")
    if len(frame) > max_rows:
        lines.append(f"\n_{len(frame) - max_rows} more rows_")
    return "\n".join(lines)


def preview_bodies(payloads: pd.DataFrame, n: int = 5) -> str:
    """The first ``n`` bodies as masked, pretty JSON in markdown."""
    if payloads is None or not len(payloads):
        return "_no payloads_"
    parts = []
    for row in payloads.head(n).itertuples(index=False):
        body = mask_body(json.loads(row.body))
        parts.append(
            f"**{mask_value('key', row.key)}** -> `{row.connection}`\n\n```json\n"
            f"{json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False)}\n```"
        )
    return "\n\n".join(parts)


def reject_reasons(rejects: pd.DataFrame) -> pd.DataFrame:
    """Records and a masked sample value per (field, reason), in order of first appearance."""
    frame = rejects.assign(
        _rec=rejects["connection"].astype(str) + "\x00" + rejects["key"].astype(str),
        value=[mask_value(f, v) for f, v in zip(rejects["field"], rejects["value"], strict=True)],
    )
    return (
        frame.groupby(["field", "reason"], sort=False)
        .agg(records=("_rec", "nunique"), sample_value=("value", "first"))
        .reset_index()
    )


def merge_reject_reasons(first: pd.DataFrame | None, more: pd.DataFrame) -> pd.DataFrame:
    """``reject_reasons`` of two chunks (no record in both) as one: what a chunked step keeps, not the rows."""
    if first is None or not len(first):
        return more
    both = pd.concat([first, more], ignore_index=True)
    return (
        both.groupby(["field", "reason"], sort=False)
        .agg(records=("records", "sum"), sample_value=("sample_value", "first"))
        .reset_index()
    )


def render_reject_reasons(grouped: pd.DataFrame | None, n: int = 10) -> str:
    """``reject_reasons`` as the markdown table of the ``n`` commonest."""
    if grouped is None or not len(grouped):
        return "_no rejects_"
    grouped = grouped.sort_values("records", ascending=False, kind="stable").head(n)
    return markdown_table(grouped[["records", "field", "reason", "sample_value"]])


def top_reject_reasons(rejects: pd.DataFrame, n: int = 10) -> str:
    """The commonest reject reasons (records and a masked sample value each) as a markdown table."""
    if rejects is None or not len(rejects):
        return "_no rejects_"
    return render_reject_reasons(reject_reasons(rejects), n)


def counts_per_connection(payloads: pd.DataFrame, rejects: pd.DataFrame) -> pd.DataFrame:
    """Records to send and records rejected, per connection (rejects without a connection: ``(unrouted)``)."""
    sent = (
        payloads.groupby("connection").size().rename("payloads")
        if len(payloads)
        else pd.Series(dtype="int64", name="payloads")
    )
    if len(rejects):
        rec = rejects.assign(
            connection=rejects["connection"].fillna("(unrouted)").astype(str),
            _rec=rejects["key"].astype(str) + "\x00" + rejects["source_rows"].astype(str),
        )
        rej = rec.groupby("connection")["_rec"].nunique().rename("rejected")
    else:
        rej = pd.Series(dtype="int64", name="rejected")
    out = pd.concat([sent, rej], axis=1).fillna(0).astype("int64")
    out.index.name = "connection"
    return out.reset_index()


def dry_run_report(batch: Any, n: int = 3) -> str:
    """A markdown summary of what ``build_payloads`` would send: counts, masked bodies, top reject reasons."""
    counts = counts_per_connection(batch.payloads, batch.rejects)
    total_sent = int(counts["payloads"].sum()) if len(counts) else 0
    total_rej = int(counts["rejected"].sum()) if len(counts) else 0
    lines = [
        "# Dry run: nothing was sent",
        "",
        f"- records that would be sent: **{total_sent}**",
        f"- records rejected: **{total_rej}**",
        "",
        "## Per connection",
        "",
        markdown_table(counts) if len(counts) else "_nothing_",
        "",
        "## Sample bodies (masked)",
        "",
        preview_bodies(batch.payloads, n),
        "",
        "## Commonest reject reasons",
        "",
        top_reject_reasons(batch.rejects),
    ]
    return "\n".join(lines)
