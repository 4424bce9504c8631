"""Orders that move on their own: open -> confirmed -> ... -> fulfilled, one step every ``seconds_per_step``.

Why lazily, from time, and not a background thread: an order's status is a function of when it last changed
(its ``trackstar_updated_date``) and the sandbox's clock, so every read sees the same answer for the same
clock, a test moves time with ``advance_clock`` instead of sleeping, and nothing runs between requests. A step
changes ``trackstar_updated_date`` (Trackstar's copy changed) but not ``updated_date`` (the source system's
clock, which a sync would be wrong to watch). Reaching a shipped status adds one shipment with a tracking
number made from the order's id (the same number on every read). An order whose status is not on the path
(cancelled, exception, ...) stays where it is; a write to an order restarts its clock from that write, and
so does turning the progression on while running (orders start moving then, not from when they were made).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from trackstar_dagster.base.timestamps import parse_timestamp

DEFAULT_STEPS: tuple[str, ...] = ("open", "confirmed", "processing", "picked", "packed", "fulfilled")
#: statuses whose orders have left the warehouse: they carry a shipment
SHIPPED = frozenset({"fulfilled", "partially_fulfilled", "shipped", "delivered"})


def iso(dt: datetime) -> str:
    """As Trackstar writes timestamps: UTC, microseconds, a trailing ``Z``."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class StatusProgression:
    """The path orders take and how long each step lasts (``seconds_per_step`` 0/None: orders stay put)."""

    steps: tuple[str, ...] = DEFAULT_STEPS
    seconds_per_step: float | None = None
    #: when it was turned on while running: older orders count their steps from here, not from their last change
    since: datetime | None = None

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("status progression: give at least one status")
        if self.seconds_per_step is not None and self.seconds_per_step < 0:
            raise ValueError("status progression: seconds_per_step must be >= 0")

    @property
    def on(self) -> bool:
        return bool(self.seconds_per_step)

    def view(self, record: dict[str, Any], now: datetime) -> dict[str, Any]:
        """The order as Trackstar holds it at ``now``: the record itself when it has not moved, else a copy."""
        status = record.get("status")
        if not self.on or status not in self.steps:
            return record
        anchor = parse_timestamp(record.get("trackstar_updated_date"))
        if anchor is None:
            return record
        if self.since is not None and self.since > anchor:
            anchor = self.since
        step = float(self.seconds_per_step or 0)
        start = self.steps.index(status)
        taken = min(max(0, int((now - anchor).total_seconds() // step)), len(self.steps) - 1 - start)
        if taken == 0:
            return record
        new_status = self.steps[start + taken]
        changed_at = anchor + timedelta(seconds=taken * step)
        out = {
            **record,
            "status": new_status,
            "raw_status": new_status.replace("_", " ").title(),
            "trackstar_updated_date": iso(changed_at),
        }
        if new_status in SHIPPED and not record.get("shipments"):
            out["shipments"] = [shipment(record["id"], changed_at)]
        return out


def shipment(order_id: str, shipped_at: datetime) -> dict[str, Any]:
    """The one shipment of a shipped sandbox order (its numbers derived from the order id: stable)."""
    digest = hashlib.sha256(order_id.encode()).hexdigest()
    return {
        "shipment_id": f"shp_{digest[:20]}",
        "shipped_date": iso(shipped_at),
        "carrier": "UPS",
        "tracking_number": f"1ZSBX{digest[20:32].upper()}",
        "packages": [
            {"package_id": f"pkg_{digest[32:44]}", "tracking_number": f"1ZSBX{digest[20:32].upper()}"}
        ],
    }
