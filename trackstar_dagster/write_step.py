"""The write step, shared by a sync's ``write_results`` asset and the plain ``write_orders`` op.

It turns the writer's plain ``WriteReport`` into a results frame (each row in its payload's partition),
Dagster metadata, and ``Failure`` / ``RetryRequested`` when the failure policy says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from trackstar_dagster.io_manager import PARTITION_COLUMN
from trackstar_dagster.metadata import markdown_table
from trackstar_dagster.resource import TrackstarResource
from trackstar_dagster.write_totals import ReportTotals, ResultsTally
from trackstar_dagster.writer import (
    FailurePolicy,
    Ledger,
    WriteReport,
    write_payloads,
)
from trackstar_dagster.writer.preview import DEFAULT_PREVIEW_LIMIT, ChangePreview

RATE_KEYS = ("writes_per_s", "latency_p50_s", "latency_p95_s")


class WriteMode(Enum):
    """``create_only``: a changed body of a record already created is reported, not sent; ``upsert``: updated."""

    create_only = "create_only"
    upsert = "upsert"


class WriteConfig(dg.Config):
    """Run config of a write step: a dry run sends nothing; ``mode`` overrides the sync's; ``namespace`` (the
    plain ``write_orders`` op only; a sync's is its name) keeps this job's ledger rows and tags its own;
    ``group_rows`` bounds what a sync's write step holds at once (stored chunks are never split);
    ``preview_limit``: a dry run in ``upsert`` mode reads at most this many changed records from Trackstar to
    show the fields that would change (0.1 s per read per token); the rest are counted, not previewed."""

    dry_run: bool = False
    mode: WriteMode | None = None
    namespace: str | None = None
    #: a sync's write step reads and writes its stored payloads a group of about this many at a time
    group_rows: int = 20_000
    preview_limit: int = DEFAULT_PREVIEW_LIMIT

    def mode_or(self, default: str) -> str:
        return self.mode.value if self.mode is not None else default


def results_metadata(results: pd.DataFrame, report: WriteReport | None = None) -> dict[str, Any]:
    """The figures of a write-results frame (of a run, or of one partition of it): counts per status (every
    status every time, so the UI plots continuous series), failures; the run's rates when given."""
    tally = ResultsTally()
    tally.add(results)
    return tally.metadata(report)


def carry_partition(results: pd.DataFrame, sent: pd.DataFrame) -> pd.DataFrame:
    """The writer's results with each record's partition, taken from the payloads sent.

    The writer answers one row per payload, in the payloads' order: the column is copied by position once the
    keys are seen to line up; otherwise looked up by (connection, key)."""
    if PARTITION_COLUMN not in sent.columns:
        return results
    parts = sent[PARTITION_COLUMN].to_numpy()
    if (
        len(results) == len(sent)
        and (results["key"].astype(str).to_numpy() == sent["key"].astype(str).to_numpy()).all()
    ):
        return results.assign(**{PARTITION_COLUMN: parts})
    by_record = dict(zip(zip(sent["connection"], sent["key"].astype(str), strict=True), parts, strict=True))
    ids = zip(results["connection"], results["key"].astype(str), strict=True)
    return results.assign(**{PARTITION_COLUMN: [by_record.get(i) for i in ids]})


def write_group(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    trackstar: TrackstarResource,
    payloads: pd.DataFrame,
    ledger: Ledger,
    *,
    dry_run: bool,
    mode: str,
    namespace: str | None = None,
    preview: ChangePreview | None = None,
) -> tuple[pd.DataFrame, WriteReport | None]:
    """Send one group of payloads (dry ones are classified against the ledger, not sent; with ``preview``,
    the changed ones are read from Trackstar and diffed): its results and the writer's report (None when
    nothing was sent). No policy here: the caller judges the run's totals."""
    dry_mask = (
        payloads["dry_run"].to_numpy(dtype=bool).copy()
        if "dry_run" in payloads.columns
        else np.zeros(len(payloads), bool)
    )
    if dry_run:
        dry_mask[:] = True
    to_send = payloads[~dry_mask]
    dry = payloads[dry_mask]
    report = None
    frames = []
    if len(to_send):
        tokens = {name: trackstar.access_token(name) for name in sorted(set(to_send["connection"]))}
        report = write_payloads(
            to_send,
            trackstar.get_client(),  # the resource's: it closes it
            tokens,
            ledger,
            mode=mode,
            namespace=namespace,
            run_label=context.run_id,
            logger=context.log,
        )
        frames.append(carry_partition(report.results, to_send))
    if len(dry):
        frames.append(dry_results(dry, ledger, namespace, preview))
    results = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["key", "connection", "action", "status"])
    )
    return results, report


def dry_results(
    dry: pd.DataFrame, ledger: Ledger, namespace: str | None, preview: ChangePreview | None = None
) -> pd.DataFrame:
    """Results of records not sent (a dry run, or dated before ``write_from``): status ``dry_run``, and in
    ``would`` what the ledger says a real run would find (``new``, ``unchanged``, ``changed``). With
    ``preview`` (a dry run in upsert mode), ``preview`` and ``changes`` (JSON: field, held, new) of the
    changed records a real run would send (not those dated before ``write_from``)."""
    cols = ["key", "connection", "action"] + ([PARTITION_COLUMN] if PARTITION_COLUMN in dry.columns else [])
    would = ["new"] * len(dry)
    if "body_hash" in dry.columns and len(dry):
        ids = (dry[c].astype(str).tolist() for c in ("connection", "action", "key", "body_hash"))
        would = ledger.classify(list(zip(*ids, strict=True)), namespace or "")
    out = dry[cols].assign(status="dry_run", would=would)
    if preview is None or "body" not in dry.columns:
        return out
    held_back = dry["dry_run"].to_numpy(dtype=bool) if "dry_run" in dry.columns else np.zeros(len(dry), bool)
    sent_would = [w if not back else "held_back" for w, back in zip(would, held_back, strict=True)]
    columns = preview.frame_columns(dry, sent_would, ledger)
    # nullable text: a sink's table gets text columns even from a group without a changed record
    return out.assign(**{k: pd.array(v, dtype="string") for k, v in columns.items()})


def change_preview(
    trackstar: TrackstarResource, *, dry_run: bool, mode: str, limit: int, namespace: str | None
) -> ChangePreview | None:
    """The run's preview of changes: a dry run in ``upsert`` mode only (elsewhere nothing would change)."""
    if not dry_run or mode != "upsert":
        return None
    return ChangePreview(
        trackstar.get_client(), trackstar.access_token, limit=limit, namespace=namespace or ""
    )


def run_writes(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    trackstar: TrackstarResource,
    payloads: pd.DataFrame,
    *,
    dry_run: bool,
    mode: str,
    max_failed_share: float,
    namespace: str | None = None,
    sink: Callable[[pd.DataFrame], None] | None = None,
    preview_limit: int = DEFAULT_PREVIEW_LIMIT,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Send one payloads frame (dry ones are reported, not sent); return results and metadata; raise on policy
    breach (``RetryRequested`` when records are being written by another run, or Trackstar asked to wait).

    Only the connections' access tokens are read here (their integrations were resolved by the payloads
    step). ``sink`` gets the results before the policy is applied: a failed step's outcomes reach the
    warehouse too."""
    preview = change_preview(trackstar, dry_run=dry_run, mode=mode, limit=preview_limit, namespace=namespace)
    with trackstar.ledger() as ledger:
        results, report = write_group(
            context,
            trackstar,
            payloads,
            ledger,
            dry_run=dry_run,
            mode=mode,
            namespace=namespace,
            preview=preview,
        )
    if sink is not None:
        sink(results)
    metadata = results_metadata(results, report)
    apply_policy(context, report, metadata, max_failed_share)
    return results, metadata


def write_in_groups(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    trackstar: TrackstarResource,
    parts: Iterable[tuple[str, pd.DataFrame]],
    store: Callable[[pd.DataFrame], None],
    *,
    dry_run: bool,
    mode: str,
    max_failed_share: float,
    namespace: str | None = None,
    sink: Callable[[pd.DataFrame], None] | None = None,
    group_rows: int = 20_000,
    preview_limit: int = DEFAULT_PREVIEW_LIMIT,
    before_failure: Callable[[dict[str, ResultsTally]], None] | None = None,
) -> tuple[dict[str, ResultsTally], dict[str, Any]]:
    """Write stored payloads one group of partitions at a time (about ``group_rows`` rows): each group's
    results stored (``store``) and sunk before the next is read, so a step that fails midway leaves every
    finished group's results behind. The policy judges the run's totals; when it fails the step,
    ``before_failure`` gets the per-partition figures first. Returns per-partition figures and the run's
    metadata."""
    totals = ReportTotals()
    tallies: dict[str, ResultsTally] = {}
    preview = change_preview(trackstar, dry_run=dry_run, mode=mode, limit=preview_limit, namespace=namespace)
    with trackstar.ledger() as ledger:
        for group in _groups(parts, group_rows):
            results, report = write_group(
                context,
                trackstar,
                group,
                ledger,
                dry_run=dry_run,
                mode=mode,
                namespace=namespace,
                preview=preview,
            )
            store(results)
            if sink is not None:
                sink(results)
            totals.add(results, report)
            for key, part in _partitions_of(results, group):
                tallies.setdefault(key, ResultsTally()).add(part)
    report = totals.report(mode)
    metadata = totals.tally.metadata(report)
    try:
        apply_policy(context, report, metadata, max_failed_share)
    except dg.Failure:
        if before_failure is not None:
            try:
                before_failure(tallies)
            except Exception as e:  # the step's own failure is the one to report
                context.log.warning(f"Trackstar write: partitions written in full not recorded: {e!r}")
        raise
    return tallies, metadata


def _groups(parts: Iterable[tuple[str, pd.DataFrame]], group_rows: int) -> Iterator[pd.DataFrame]:
    """Stored chunks gathered into groups of about ``group_rows`` rows (a chunk is never split)."""
    group: list[pd.DataFrame] = []
    rows = 0
    for _, chunk in parts:
        group.append(chunk)
        rows += len(chunk)
        if rows >= group_rows:
            yield pd.concat(group, ignore_index=True)
            group, rows = [], 0
    if group:
        yield pd.concat(group, ignore_index=True)


def _partitions_of(results: pd.DataFrame, sent: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    if PARTITION_COLUMN not in results.columns:
        return [("", results)]
    return [(str(k), p) for k, p in results.groupby(PARTITION_COLUMN, sort=False)]


def apply_policy(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    report: WriteReport | None,
    metadata: dict[str, Any],
    max_failed_share: float,
) -> None:
    """The failure policy on a report: ``Failure`` or ``RetryRequested`` when it says so (metadata gains the
    stopped connections and the failed share)."""
    if report is None:
        return
    for conn, reason in (report.stopped_connections or {}).items():
        metadata[f"stopped_{conn}"] = dg.MetadataValue.text(str(reason))
    outcome = FailurePolicy(max_failed_share=max_failed_share).evaluate(report)
    metadata["failed_share"] = dg.MetadataValue.float(float(outcome.failed_share))
    context.log.info(f"Trackstar write: {outcome.message}")
    if not outcome.ok:
        # every result is already in the ledger (and the failed records are picked up by key next run)
        if outcome.retryable and outcome.retry_after_s:
            wait = float(outcome.retry_after_s)
            why = "another run's claims expire or end" if report.in_flight_elsewhere else "the API asked"
            context.log.warning(f"{outcome.message}; retrying the step in {wait:.0f}s ({why})")
            raise dg.RetryRequested(max_retries=3, seconds_to_wait=wait)
        raise dg.Failure(description=outcome.message, metadata={**metadata, **_plain(outcome.metadata)})


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    """Policy metadata as Dagster metadata values (tables as markdown)."""
    out: dict[str, Any] = {}
    for key, value in (metadata or {}).items():
        if isinstance(value, pd.DataFrame):
            out[key] = dg.MetadataValue.md(markdown_table(value, max_rows=25))
        elif isinstance(value, bool | int | float | str) or value is None:
            out[key] = value
        else:
            out[key] = dg.MetadataValue.json(value)
    return out
