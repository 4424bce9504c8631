"""pandera and reject results as Dagster asset checks, with structured failure cases (not a text blob).

dagster-pandera pins pandas<3 and drops the failure cases, so this small adapter turns the rows layer's
plain ``CheckOutcome`` records into ``AssetCheckResult``s: counts per check and column, and a sample table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import dagster as dg
import pandas as pd

from trackstar_dagster.metadata import markdown_table

SAMPLE_ROWS = 20


def _failures(outcome: Any) -> pd.DataFrame:
    failures = getattr(outcome, "failures", None)
    return failures if isinstance(failures, pd.DataFrame) else pd.DataFrame()


def _offset_rows(summary: pd.DataFrame, offset: int) -> pd.DataFrame:
    """A failure summary's row indexes moved by ``offset`` (a chunk's rows in the run's)."""
    if not offset or not len(summary) or "index" not in summary.columns:
        return summary

    def move(i: Any) -> Any:
        return i + offset if isinstance(i, int) and not isinstance(i, bool) else i

    out = summary.copy()
    out["index"] = [move(i) for i in out["index"].tolist()]
    if "sample" in out.columns:
        out["sample"] = [
            [{**s, "index": move(s.get("index"))} for s in (samples or [])] for samples in out["sample"]
        ]
    return out


def merge_outcomes(merged: list[Any], outcomes: Sequence[Any], row_offset: int = 0) -> list[Any]:
    """Check outcomes of one more chunk merged into the run's (by check name): passed only when every chunk
    passed, failure counts summed, the first samples kept, integer metadata summed. Rows of the chunk are
    numbered from ``row_offset``, as in one frame of the whole run."""
    by_name = {o.name: o for o in merged}
    for o in outcomes:
        o = dataclasses.replace(o, failures=_offset_rows(_failures(o), row_offset))
        prev = by_name.get(o.name)
        if prev is None:
            by_name[o.name] = o
            continue
        both = pd.concat([f for f in (_failures(prev), _failures(o)) if len(f)] or [_failures(o)])
        failures = both
        if len(both):
            failures = (
                both.groupby(["check", "column"], sort=False)
                .agg(
                    count=("count", "sum"),
                    failure_case=("failure_case", "first"),
                    index=("index", "first"),
                    sample=("sample", lambda s: [x for lst in s for x in (lst or [])][:5]),
                )
                .reset_index()
                .sort_values("count", ascending=False, kind="stable")
                .reset_index(drop=True)[list(both.columns)]
            )
        metadata = dict(prev.metadata)
        for k, v in o.metadata.items():
            ints = isinstance(v, int) and isinstance(metadata.get(k), int)
            metadata[k] = metadata[k] + v if ints else metadata.get(k, v)
        by_name[o.name] = dataclasses.replace(
            prev, passed=prev.passed and o.passed, failures=failures, metadata=metadata
        )
    return list(by_name.values())


def failure_counts(outcomes: Sequence[Any]) -> pd.DataFrame:
    """One row per (check, column) with its failure count, over all outcomes."""
    frames = []
    for outcome in outcomes:
        f = _failures(outcome)
        if f.empty:
            continue
        f = f.copy()
        if "check" not in f.columns:
            f["check"] = getattr(outcome, "name", "check")
        if "column" not in f.columns:
            f["column"] = None
        if "count" not in f.columns:
            f["count"] = 1
        frames.append(f[["check", "column", "count"]])
    if not frames:
        return pd.DataFrame(
            {
                "check": pd.Series(dtype="string"),
                "column": pd.Series(dtype="string"),
                "failures": pd.Series(dtype="int64"),
            }
        )
    allf = pd.concat(frames, ignore_index=True)
    allf["column"] = allf["column"].astype("string").fillna("(frame)")
    return (
        allf.groupby(["check", "column"], dropna=False)["count"]
        .sum()
        .rename("failures")
        .reset_index()
        .sort_values("failures", ascending=False, ignore_index=True)
    )


def rows_valid_result(
    asset_key: dg.AssetKey,
    check_name: str,
    outcomes: Sequence[Any],
    *,
    n_rows: int,
    n_records: int,
    n_rejected: int,
) -> dg.AssetCheckResult:
    """Passed when every validation outcome passed; WARN otherwise, with counts and a sample of failure cases."""
    failed = [o for o in outcomes if not getattr(o, "passed", True)]
    counts = failure_counts(outcomes)
    n_failures = int(counts["failures"].sum()) if len(counts) else 0
    sample = (
        pd.concat([_failures(o).head(SAMPLE_ROWS) for o in failed], ignore_index=True)
        if failed
        else pd.DataFrame()
    )
    metadata: dict[str, Any] = {
        "rows": dg.MetadataValue.int(n_rows),
        "records": dg.MetadataValue.int(n_records),
        "failure_cases": dg.MetadataValue.int(n_failures),
        "pass_rate": dg.MetadataValue.float((n_records - n_rejected) / n_records if n_records else 1.0),
        "failures_by_check_and_column": dg.MetadataValue.md(markdown_table(counts, max_rows=50)),
    }
    if len(counts):
        metadata["failures_table"] = dg.MetadataValue.table(
            records=[
                dg.TableRecord({"check": str(r.check), "column": str(r.column), "failures": int(r.failures)})
                for r in counts.head(50).itertuples()
            ],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn("check", "string"),
                    dg.TableColumn("column", "string"),
                    dg.TableColumn("failures", "int"),
                ]
            ),
        )
    if not sample.empty:
        metadata["sample_failure_cases"] = dg.MetadataValue.md(
            markdown_table(sample.astype(str), max_rows=SAMPLE_ROWS)
        )
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=not failed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description="; ".join(str(getattr(o, "description", None) or getattr(o, "name", "")) for o in failed)
        or None,
    )


def reject_share_result(
    asset_key: dg.AssetKey, check_name: str, rejected: int, n_records: int, max_share: float
) -> dg.AssetCheckResult:
    """ERROR (blocking the write) above ``max_share`` rejected records, WARN when any, pass when none."""
    share = rejected / n_records if n_records else 0.0
    over = share > max_share
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=rejected == 0,
        severity=dg.AssetCheckSeverity.ERROR if over else dg.AssetCheckSeverity.WARN,
        metadata={
            "rejected_records": dg.MetadataValue.int(rejected),
            "records": dg.MetadataValue.int(n_records),
            "reject_share": dg.MetadataValue.float(share),
            "max_reject_share": dg.MetadataValue.float(max_share),
        },
        description=(
            f"{rejected} of {n_records} records rejected ({share:.1%}; limit {max_share:.0%})"
            if rejected
            else None
        ),
    )
