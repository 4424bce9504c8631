"""The write step's running totals: a results frame's figures added chunk by chunk, and the writer's reports of
several groups summed into one the failure policy judges (a two-year backfill is written a group at a time)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from trackstar_dagster.metadata import frame_metadata, markdown_table
from trackstar_dagster.preview_metadata import PreviewTally
from trackstar_dagster.writer import FAILURE_COLUMNS, RESULT_COLUMNS, STATUSES, WriteReport

DRY_RUN_CLASSES = ("new", "unchanged", "changed")


class ResultsTally:
    """A results frame's figures, added chunk by chunk (a partition written in several groups): counts per
    status and per dry-run class, the first rows (column schema) and the first failures."""

    def __init__(self, template: pd.DataFrame | None = None) -> None:
        self.rows = 0
        self.counts: Counter[str] = Counter()
        self.would: Counter[str] = Counter()
        self.head: pd.DataFrame | None = template
        self.failures: pd.DataFrame | None = None
        self.preview = PreviewTally()  # a dry run's preview of changes (upsert mode)

    def add(self, results: pd.DataFrame) -> None:
        self.rows += len(results)
        self.preview.add(results)
        if self.head is None or (not len(self.head) and len(results)):
            self.head = results.head(5)
        if not len(results) or "status" not in results.columns:
            return
        self.counts.update(results["status"].value_counts().to_dict())
        if "would" in results.columns:
            self.would.update(results["would"].value_counts().to_dict())
        failures = results[results["status"].isin(["failed", "rejected", "in_flight_elsewhere"])]
        if len(failures) and (self.failures is None or len(self.failures) < 26):
            cols = [c for c in FAILURE_COLUMNS if c in failures.columns]
            more = failures[cols].head(26)
            self.failures = more if self.failures is None else pd.concat([self.failures, more]).head(26)

    @property
    def complete(self) -> bool:
        """Every record went out or was judged (none failed, none left to another run's claim)."""
        return not (self.counts["failed"] or self.counts["in_flight_elsewhere"])

    def metadata(self, report: WriteReport | None = None) -> dict[str, Any]:
        head = self.head if self.head is not None else pd.DataFrame()
        counts, n_failures = (
            self.counts,
            sum(self.counts[s] for s in ("failed", "rejected", "in_flight_elsewhere")),
        )
        metadata: dict[str, Any] = {
            **frame_metadata(head),
            "dagster/row_count": dg.MetadataValue.int(self.rows),
            **{f"status_{k}": dg.MetadataValue.int(int(counts.get(k, 0))) for k in (*STATUSES, "dry_run")},
            "dry_run_records": dg.MetadataValue.int(int(counts.get("dry_run", 0))),
            **{f"dry_run_{k}": dg.MetadataValue.int(int(self.would.get(k, 0))) for k in DRY_RUN_CLASSES},
        }
        if report is not None:
            metadata.update(
                {
                    "writes_per_s": dg.MetadataValue.float(float(report.writes_per_s or 0.0)),
                    "latency_p50_s": dg.MetadataValue.float(float(report.p50_latency_s or 0.0)),
                    "latency_p95_s": dg.MetadataValue.float(float(report.p95_latency_s or 0.0)),
                }
            )
        if n_failures and self.failures is not None:
            table = markdown_table(self.failures.head(25), max_rows=25)
            if n_failures > 25:  # as one frame of them all would say
                table = table + f"\n\n_{n_failures - 25} more rows_"
            metadata["failures"] = dg.MetadataValue.md(table)
        metadata.update(self.preview.metadata())
        return metadata


@dataclass
class SummedReport(WriteReport):
    """Several groups' reports as one (their result rows not kept: the counts the policy reads are)."""

    changed: int = 0
    transient: int = 0

    @property
    def body_changed(self) -> int:
        return self.changed

    @property
    def transient_failures(self) -> int:
        return self.transient


class ReportTotals:
    """The writer's reports of a step's groups, summed; ``tally`` holds the figures of all its results."""

    def __init__(self) -> None:
        self.tally = ResultsTally()
        self.reports: list[WriteReport] = []
        self.counts: Counter[str] = Counter()
        self.failed_by_connection: Counter[str] = Counter()
        self.latencies: list[np.ndarray] = []
        self.changed = 0
        self.failures: list[pd.DataFrame] = []
        self.stopped: dict[str, str] = {}
        self.retry_after: float | None = None
        self.sent = self.total = 0
        self.elapsed = self.send_window = 0.0

    def add(self, results: pd.DataFrame, report: WriteReport | None) -> None:
        self.tally.add(results)
        if report is None:
            return
        self.reports.append(report)
        self.counts.update(report.counts)
        self.total += report.total
        self.sent += report.sent
        self.elapsed += report.elapsed_s
        if report.writes_per_s:
            self.send_window += report.sent / report.writes_per_s if report.sent else 0.0
        self.changed += report.body_changed
        res = report.results
        if len(res):
            failed = res[res["status"] == "failed"]
            self.failed_by_connection.update(failed["connection"].value_counts().to_dict())
            lat = pd.to_numeric(res["latency_s"], errors="coerce").dropna().to_numpy(dtype=float)
            self.latencies.append(lat)
        if len(report.failures) and sum(len(f) for f in self.failures) < 100:
            self.failures.append(report.failures.head(100))
        self.stopped.update(report.stopped_connections or {})
        if report.retry_after_s is not None:
            self.retry_after = max(self.retry_after or 0.0, report.retry_after_s)

    def report(self, mode: str) -> WriteReport | None:
        """One report of every group (the group's own when there was one); None when nothing was sent."""
        if len(self.reports) <= 1:
            return self.reports[0] if self.reports else None
        lat = np.concatenate(self.latencies) if self.latencies else np.array([])
        failures = pd.concat(self.failures, ignore_index=True).head(100) if self.failures else pd.DataFrame()
        transient = sum(n for c, n in self.failed_by_connection.items() if c not in self.stopped)
        return SummedReport(
            results=pd.DataFrame(columns=RESULT_COLUMNS),
            counts={s: int(self.counts.get(s, 0)) for s in STATUSES},
            total=self.total,
            elapsed_s=self.elapsed,
            writes_per_s=(self.sent / self.send_window) if self.send_window > 0 else 0.0,
            p50_latency_s=float(np.percentile(lat, 50)) if len(lat) else None,
            p95_latency_s=float(np.percentile(lat, 95)) if len(lat) else None,
            failures=failures,
            stopped_connections=dict(self.stopped),
            retry_after_s=self.retry_after,
            mode=mode,
            sent=self.sent,
            changed=self.changed,
            transient=transient,
        )


def first_head(tallies: Mapping[str, ResultsTally]) -> pd.DataFrame | None:
    """An empty frame with the results' columns (for a partition without rows), from the first tally with any."""
    return next((t.head.iloc[0:0] for t in tallies.values() if t.head is not None), None)
