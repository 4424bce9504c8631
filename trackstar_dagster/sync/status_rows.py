"""Orders read back as warehouse rows: one per order (status, shipments, tracking numbers, Trackstar's clock),
the figures and preview an asset shows, and the high water marks it keeps in its materialization metadata.

Why marks in the metadata: they must survive the run and belong to the asset (a wiped table is refilled from
the ledger's ids once the asset's history is wiped too), with no table of our own in the user's warehouse.
"""

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd

from trackstar_dagster.base.keys import parse_tag, record_tags
from trackstar_dagster.client.order_reads import trackstar_updated_at
from trackstar_dagster.metadata import frame_metadata, markdown_table

STATUS_COLUMNS = [
    "connection",
    "key",
    "order_number",
    "trackstar_id",
    "status",
    "raw_status",
    "shipments",
    "tracking_numbers",
    "trackstar_updated_date",
    "read_at",
]
MARKS_KEY = "high_water_marks"
#: per connection, the latest ledger row seen (``ConnectionRead``: orders whose row came after a read)
LEDGER_MARKS_KEY = "ledger_marks"
PREVIEW_ROWS = 20


def tracking_numbers(record: Mapping[str, Any]) -> list[str]:
    """Every tracking number of an order's shipments and their packages, once each, in order."""
    out: list[str] = []
    for shipment in record.get("shipments") or []:
        if not isinstance(shipment, dict):
            continue
        found = [shipment.get("tracking_number")]
        found += [p.get("tracking_number") for p in shipment.get("packages") or [] if isinstance(p, dict)]
        out += [str(n) for n in found if n and str(n) not in out]
    return list(dict.fromkeys(out))


def tagged_key(record: Mapping[str, Any], namespace: str) -> str | None:
    """The key id of this sync's tag on a record (proof it is the sync's), None when it carries none."""
    for tag in record_tags(record):
        parsed = parse_tag(tag, namespace)
        if parsed is not None:
            return parsed[1]
    return None


def status_row(connection: str, key: str, record: Mapping[str, Any], read_at: datetime) -> dict[str, Any]:
    """One order as a warehouse row."""
    shipments = record.get("shipments") or []
    return {
        "connection": connection,
        "key": key,
        "order_number": record.get("order_number"),
        "trackstar_id": record.get("id"),
        "status": record.get("status"),
        "raw_status": record.get("raw_status"),
        "shipments": len(shipments) if isinstance(shipments, list) else 0,
        "tracking_numbers": ", ".join(tracking_numbers(record)) or None,
        "trackstar_updated_date": trackstar_updated_at(record),
        "read_at": read_at,
    }


def status_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The rows as a frame, one per (connection, trackstar id): an order read twice (an overlap, a page read
    while it moved) keeps its latest state."""
    frame = pd.DataFrame(list(rows), columns=STATUS_COLUMNS)
    for col in ("trackstar_updated_date", "read_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    frame["shipments"] = frame["shipments"].astype("int64")
    for col in STATUS_COLUMNS:
        if col not in ("shipments", "trackstar_updated_date", "read_at"):
            frame[col] = frame[col].astype("object")  # text
    frame = frame.sort_values("trackstar_updated_date", kind="stable", na_position="first")
    frame = frame.drop_duplicates(["connection", "trackstar_id"], keep="last")
    return frame.sort_values(["connection", "key"], kind="stable").reset_index(drop=True)


def status_metadata(frame: pd.DataFrame, reads: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Row count and schema, orders per status, per connection how it was read, and a preview."""
    counts = {str(k): int(v) for k, v in frame["status"].value_counts(dropna=False).items()}
    preview = frame.head(PREVIEW_ROWS).astype(str)
    return {
        **frame_metadata(frame),
        "status_counts": dg.MetadataValue.json(counts),
        "shipped_orders": dg.MetadataValue.int(int((frame["shipments"] > 0).sum())),
        "reads": dg.MetadataValue.json({k: dict(v) for k, v in reads.items()}),
        "preview": dg.MetadataValue.md(
            markdown_table(preview, max_rows=PREVIEW_ROWS) if len(frame) else "(none)"
        ),
    }


def load_marks(instance: dg.DagsterInstance, key: dg.AssetKey, name: str = MARKS_KEY) -> dict[str, datetime]:
    """Each connection's high water mark from the asset's last materialization (none the first time)."""
    event = instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event is not None else None
    value = materialization.metadata.get(name) if materialization is not None else None
    raw = getattr(value, "data", None) or {}
    out: dict[str, datetime] = {}
    for name, text in raw.items():
        mark = trackstar_updated_at({"trackstar_updated_date": text})
        if mark is not None:
            out[str(name)] = mark
    return out


def marks_metadata(marks: Mapping[str, datetime], name: str = MARKS_KEY) -> dict[str, Any]:
    """The marks as the next materialization reads them."""
    text = {k: v.astimezone(UTC).isoformat().replace("+00:00", "Z") for k, v in sorted(marks.items())}
    return {name: dg.MetadataValue.json(text)}
