"""What a write run reports, and when that report fails the run.

Apart from the run so the result shape (``RESULT_COLUMNS``, ``FAILURE_COLUMNS``, ``STATUSES``),
``WriteReport`` and ``FailurePolicy`` can be read and used without the run engine; ``results.py`` builds
reports, this module imports nothing of the writer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

RESULT_COLUMNS = [
    "key",
    "connection",
    "action",
    "status",
    "trackstar_id",
    "http_status",
    "error",
    "origin",
    "unused_fields",
    "request_id",
    "attempts",
    "started_at",
    "finished_at",
    "latency_s",
    "body_changed",
    "reconciled",
]
FAILURE_COLUMNS = [
    "key",
    "connection",
    "action",
    "status",
    "http_status",
    "error",
    "origin",
    "request_id",
    "attempts",
]
STATUSES = ("created", "updated", "unchanged", "rejected", "failed", "in_flight_elsewhere")


# ---------------------------------------------------------------------------------------------------------
# Report and failure policy
# ---------------------------------------------------------------------------------------------------------


@dataclass
class WriteReport:
    """Everything a run did, per record and in total (plain Python; the Dagster layer turns it into metadata)."""

    results: pd.DataFrame
    counts: dict[str, int]
    total: int
    elapsed_s: float
    writes_per_s: float
    p50_latency_s: float | None
    p95_latency_s: float | None
    failures: pd.DataFrame
    stopped_connections: dict[str, str]
    retry_after_s: float | None
    mode: str
    sent: int  # write requests that got a success answer in this run (not replays, not adoptions)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    @property
    def rejected(self) -> int:
        return self.counts.get("rejected", 0)

    @property
    def in_flight_elsewhere(self) -> int:
        """Records another live run holds (claimed): not sent here, to be retried once it is done."""
        return self.counts.get("in_flight_elsewhere", 0)

    @property
    def body_changed(self) -> int:
        return int(self.results["body_changed"].sum()) if len(self.results) else 0

    @property
    def transient_failures(self) -> int:
        """Failed records that a later attempt may well write (not stopped by 401/403/501)."""
        if not len(self.results):
            return 0
        failed = self.results[self.results["status"] == "failed"]
        stopped = failed["connection"].isin(list(self.stopped_connections))
        return int((~stopped).sum())

    def summary(self) -> dict[str, Any]:
        """JSON-safe numbers for logs and Dagster metadata."""
        return {
            "total": self.total,
            **{f"n_{s}": self.counts.get(s, 0) for s in STATUSES},
            "body_changed": self.body_changed,
            "writes_per_s": round(self.writes_per_s, 2),
            "p50_latency_s": None if self.p50_latency_s is None else round(self.p50_latency_s, 4),
            "p95_latency_s": None if self.p95_latency_s is None else round(self.p95_latency_s, 4),
            "elapsed_s": round(self.elapsed_s, 3),
            "sent": self.sent,
            "stopped_connections": dict(self.stopped_connections),
            "retry_after_s": self.retry_after_s,
            "mode": self.mode,
        }


@dataclass(frozen=True)
class PolicyOutcome:
    """The verdict on a report. ``ok`` False -> the Dagster layer raises ``Failure`` (or, when
    ``retryable``, ``RetryRequested(seconds_to_wait=retry_after_s)``) after everything was recorded."""

    ok: bool
    message: str
    failed_share: float
    rejected_share: float
    retryable: bool
    retry_after_s: float | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class FailurePolicy:
    """When write failures fail the run.

    ``failed`` (not written, e.g. transient trouble outlived the retries, or a stopped connection) counts
    against ``max_failed_share``. ``in_flight_elsewhere`` (another live run holds the record) never counts as
    a failure, but the run is not done either: it is retryable, after the other run's claim. ``rejected`` (Trackstar or the WMS refused the body: bad data) is
    counted apart and fails the run only past ``max_rejected_share`` (None: never, only reported).
    Shares are of all records in the report.
    """

    max_failed_share: float = 0.0
    max_rejected_share: float | None = None

    def evaluate(self, report: WriteReport) -> PolicyOutcome:
        total = max(report.total, 1)
        failed_share = report.failed / total
        rejected_share = report.rejected / total
        failed_over = report.failed > 0 and failed_share > self.max_failed_share
        rejected_over = (
            self.max_rejected_share is not None
            and report.rejected > 0
            and rejected_share > self.max_rejected_share
        )
        problems: list[str] = []
        if failed_over:
            problems.append(
                f"{report.failed} of {report.total} records failed to write "
                f"({failed_share:.1%} > max_failed_share {self.max_failed_share:.1%})"
            )
        if rejected_over:
            problems.append(
                f"{report.rejected} of {report.total} records were rejected by Trackstar "
                f"({rejected_share:.1%} > max_rejected_share {self.max_rejected_share:.1%})"
            )
        for connection, reason in report.stopped_connections.items():
            problems.append(f"connection {connection!r} stopped: {reason}")
        elsewhere = report.in_flight_elsewhere
        if elsewhere:
            problems.append(
                f"{elsewhere} of {report.total} records are being written by another run right now "
                f"(claimed in the ledger); not sent here, retry after it"
            )
        ok = not (failed_over or rejected_over or elsewhere)
        # a transient failure (no stopped connection, nothing rejected over the limit) is worth a retry
        retryable = (
            not ok
            and not rejected_over
            and report.transient_failures == report.failed
            and not report.stopped_connections
        )
        if ok:
            message = f"wrote {report.total} records: " + ", ".join(
                f"{report.counts.get(s, 0)} {s}" for s in STATUSES
            )
            if report.rejected:
                message += f" ({report.rejected} rejected by Trackstar; see the failures table)"
        else:
            message = "; ".join(problems)
            if retryable and report.retry_after_s:
                message += f" (Trackstar asked to wait {report.retry_after_s:g} s)"
        failures = report.failures.head(100)
        metadata = {
            **report.summary(),
            "failed_share": round(failed_share, 4),
            "rejected_share": round(rejected_share, 4),
            "failures": json.loads(failures.to_json(orient="records")) if len(failures) else [],
        }
        return PolicyOutcome(
            ok=ok,
            message=message,
            failed_share=failed_share,
            rejected_share=rejected_share,
            retryable=retryable,
            retry_after_s=report.retry_after_s,
            metadata=metadata,
        )
