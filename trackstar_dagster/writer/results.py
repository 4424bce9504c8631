"""What a write run found out, record by record: result rows, outcomes for the ledger, stopped connections.

``Results`` is the one place a record is finished: its result row is set and, when the ledger must learn of
it, its ``Outcome`` queued for the ``OutcomeFlusher``. The planner, the senders and the reconciler share one
``Results`` (passed in), so a record's row, its ledger outcome and the lane's count of unfinished records
cannot drift apart. It also decides when a connection is stopped (401/403/501, a shared budget that cannot be
reached, or too many 5xx in a row)
and builds the ``WriteReport`` at the end.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from ..base.errors import TrackstarError, TrackstarNotImplementedError
from ..client.shared_budget import BudgetUnavailableError
from .lanes import Item, Lane, utcnow
from .ledger_table import Outcome
from .report import FAILURE_COLUMNS, RESULT_COLUMNS, STATUSES, WriteReport

#: ledger statuses that become an ``Outcome`` (``unchanged`` and ``in_flight_elsewhere`` leave the row alone)
RECORDED = ("created", "updated", "failed", "rejected")


def stop_message(connection: str, err: TrackstarError) -> str:
    """Why a connection's remaining writes are not sent, in words a person can act on."""
    if isinstance(err, BudgetUnavailableError):  # fail closed: no slot, no request
        cause = str(err).strip().splitlines()[0]
        return (
            f"{connection}: the database of the shared rate budget could not be reached, so nothing was sent "
            f"on this connection; its records were not sent and are picked up by the next run ({cause})"
        )
    said = err.error or err.message
    if isinstance(err, TrackstarNotImplementedError):
        why = "the integration does not support this action (501)"
    elif err.status == 403:
        why = "Trackstar refused writes (403): writes or this action are disabled for the connection"
    else:
        why = f"Trackstar refused the credentials ({err.status}): the API key or access token is wrong"
    return f"{why}; remaining writes of connection {connection!r} were not sent. Trackstar said: {said}"


class Results:
    """Result rows, queued ledger outcomes, stopped connections and the numbers of a run's report."""

    def __init__(self, log: logging.Logger | Any, *, max_consecutive_5xx: int) -> None:
        self.log = log
        self.max_consecutive_5xx = max(1, int(max_consecutive_5xx))
        self.rows: list[dict[str, Any]] = []
        self.outcomes: list[Outcome] = []  # queued for the ledger; the flusher takes them
        self.stopped: dict[str, str] = {}
        self.retry_after_s: float | None = None
        self.done = 0
        self.sent_ok = 0
        self.first_send: float | None = None
        self.last_finish: float | None = None
        self.latencies: list[float] = []

    def start(self, n: int) -> None:
        """One empty row per record of the frame, in its order."""
        self.rows = [{} for _ in range(n)]

    # -- finishing records ----------------------------------------------------------------------------

    def row(self, idx: int, key: str, connection: str, action: str, status: str, **values: Any) -> None:
        """The result row of one record (decided without the ledger learning anything new)."""
        row = dict.fromkeys(RESULT_COLUMNS)
        row.update(key=key, connection=connection, action=action, status=status, attempts=0)
        row.update(body_changed=False, reconciled=False, unused_fields=[])
        row.update(values)
        self.rows[idx] = row
        self.done += 1

    def finish(
        self, lane: Lane, item: Item, status: str, *, ledger_status: str | None = None, **values: Any
    ) -> None:
        """Result row + ledger outcome for one record; wakes the lane's end when it was the last one."""
        now = time.monotonic()
        self.row(
            item.idx,
            item.key,
            item.connection,
            item.action,
            status,
            trackstar_id=values.pop("trackstar_id", item.trackstar_id),
            attempts=item.attempts,
            started_at=item.started_at,
            finished_at=utcnow(),
            **values,
        )
        self.last_finish = now
        ledger_status = ledger_status or status
        if ledger_status in RECORDED:
            self.outcomes.append(
                Outcome(
                    item.connection,
                    item.action,
                    item.key,
                    ledger_status,
                    body_hash=item.body_hash,
                    trackstar_id=self.rows[item.idx]["trackstar_id"],
                    outcome_unknown=item.unknown and ledger_status == "failed",
                    http_status=values.get("http_status"),
                    request_id=values.get("request_id"),
                    error=values.get("error"),
                )
            )
        lane.unfinished -= 1
        lane.wake.set()

    def fail(self, lane: Lane, item: Item, err: TrackstarError, *, prefix: str) -> None:
        """``failed``: not written, worth another run (the ledger keeps whether the outcome is unknown)."""
        self.finish(
            lane,
            item,
            "failed",
            error=f"{prefix}: {err}",
            http_status=err.status,
            origin=err.origin,
            request_id=err.request_id,
        )

    def take_outcomes(self) -> list[Outcome]:
        """Every queued outcome, for one ledger write (the queue starts again empty)."""
        batch, self.outcomes = self.outcomes, []
        return batch

    def put_back(self, batch: list[Outcome]) -> None:
        """A ledger write failed: its outcomes go back to the front of the queue, in their order."""
        self.outcomes[:0] = batch

    def note_held(self, item: Item, trackstar_id: str) -> None:
        """The ledger learns that Trackstar holds an earlier body of this record (not this run's body)."""
        self.outcomes.append(
            Outcome(
                item.connection, item.action, item.key, "created", body_hash=None, trackstar_id=trackstar_id
            )
        )

    # -- stopping connections and asking to wait ------------------------------------------------------

    def stop_lane(self, lane: Lane, reason: str) -> None:
        """Stop a connection: its remaining records fail with ``reason`` (one log line, not one per record)."""
        lane.stop_reason = reason
        self.stopped[lane.connection] = reason
        self.log.error(f"Trackstar writer: {reason}")

    def stop(self, lane: Lane, err: TrackstarError) -> str:
        """Stop a connection Trackstar refuses (401/403/501) or whose shared budget cannot be reached, once;
        returns the reason its records carry."""
        if lane.stop_reason is None:
            self.stop_lane(lane, stop_message(lane.connection, err))
        return lane.stop_reason or ""

    def server_error(self, lane: Lane, err: TrackstarError) -> bool:
        """Count consecutive 5xx of a connection; True once it is stopped for them (one clear message,
        instead of every record waiting out its retries against a server that is down)."""
        if err.status is None or err.status < 500:
            if err.status is not None:
                lane.server_errors = 0
            return lane.stop_reason is not None
        lane.server_errors += 1
        if lane.server_errors >= self.max_consecutive_5xx and lane.stop_reason is None:
            self.stop_lane(
                lane,
                (
                    f"{lane.connection}: {lane.server_errors} consecutive 5xx answers (the last {err.status}); stopped this "
                    f"connection (Trackstar or the integration is down); its remaining records were not sent and are "
                    f"picked up by the next run"
                ),
            )
        return lane.stop_reason is not None

    def note_retry_after(self, err: TrackstarError) -> None:
        """Trackstar asked to wait: the report's ``retry_after_s`` is the longest wait asked."""
        if err.retry_after:
            self.wait_at_least(float(err.retry_after))

    def wait_at_least(self, seconds: float) -> None:
        self.retry_after_s = max(self.retry_after_s or 0.0, seconds)

    # -- the numbers ----------------------------------------------------------------------------------

    def sending(self, t0: float) -> None:
        """A write request is leaving: the first one starts the window ``writes_per_s`` is measured over."""
        if self.first_send is None:
            self.first_send = t0

    def sent(self, latency: float, *, replayed: bool) -> None:
        """One write answered with success (a replay is not counted as sent)."""
        self.latencies.append(latency)
        if not replayed:
            self.sent_ok += 1

    def report(self, elapsed: float, mode: str) -> WriteReport:
        """The run's ``WriteReport`` (result frame typed for Dagster metadata), logged in one line."""
        results = pd.DataFrame(self.rows, columns=RESULT_COLUMNS)
        for col in ("body_changed", "reconciled"):
            results[col] = results[col].fillna(False).astype(bool)
        results["attempts"] = results["attempts"].fillna(0).astype(int)
        results["http_status"] = results["http_status"].astype("Int64")
        results["latency_s"] = results["latency_s"].astype(float)
        counts = {s: int((results["status"] == s).sum()) for s in STATUSES}
        window = (self.last_finish - self.first_send) if (self.first_send and self.last_finish) else 0.0
        lat = np.array(self.latencies) if self.latencies else None
        failures = results[results["status"].isin(["failed", "rejected"])][FAILURE_COLUMNS].reset_index(
            drop=True
        )
        report = WriteReport(
            results=results,
            counts=counts,
            total=len(results),
            elapsed_s=elapsed,
            writes_per_s=(self.sent_ok / window) if window > 0 else 0.0,
            p50_latency_s=float(np.percentile(lat, 50)) if lat is not None else None,
            p95_latency_s=float(np.percentile(lat, 95)) if lat is not None else None,
            failures=failures,
            stopped_connections=dict(self.stopped),
            retry_after_s=self.retry_after_s,
            mode=mode,
            sent=self.sent_ok,
        )
        self.log.info(
            f"Trackstar writer: done in {elapsed:.1f} s: "
            + ", ".join(f"{counts[s]} {s}" for s in STATUSES)
            + f"; {report.writes_per_s:.1f} writes/s"
        )
        return report
