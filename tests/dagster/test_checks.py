"""The asset checks a user sees on a sync's payloads: pass/fail, severity and metadata from given outcomes."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from trackstar_dagster.checks import failure_counts, reject_share_result, rows_valid_result
from trackstar_dagster.mapping.validation import CheckOutcome

KEY = dg.AssetKey(["s", "payloads"])


def outcome(name: str, failures: list[tuple[str, int]] | None = None) -> CheckOutcome:
    frame = pd.DataFrame([{"check": name, "column": col, "count": n} for col, n in (failures or [])])
    return CheckOutcome(
        name=name,
        passed=not failures,
        severity="WARN",
        description=f"{name}: {len(failures or [])} columns fail",
        **({"failures": frame} if failures else {}),
    )


@pytest.mark.parametrize(
    ("rejected", "records", "passed", "severity"),
    [
        (0, 20, True, dg.AssetCheckSeverity.WARN),  # none rejected: passes
        (1, 20, False, dg.AssetCheckSeverity.WARN),  # 5% <= 10%: a warning, the write goes on
        (2, 20, False, dg.AssetCheckSeverity.WARN),  # exactly at the limit: still a warning
        (3, 20, False, dg.AssetCheckSeverity.ERROR),  # 15% > 10%: an error, which blocks the write
        (0, 0, True, dg.AssetCheckSeverity.WARN),  # no records at all
    ],
)
def test_reject_share_severity_follows_the_limit(rejected, records, passed, severity):
    result = reject_share_result(KEY, "reject_share", rejected, records, 0.1)
    assert result.passed is passed and result.severity == severity
    assert result.asset_key == KEY and result.check_name == "reject_share"
    assert result.metadata["rejected_records"].value == rejected
    assert result.metadata["records"].value == records
    assert result.metadata["reject_share"].value == pytest.approx(rejected / records if records else 0.0)
    assert result.metadata["max_reject_share"].value == pytest.approx(0.1)
    assert (result.description is None) is passed
    if not passed:
        assert f"{rejected} of {records} records rejected" in result.description


def test_rows_valid_passes_with_clean_outcomes():
    result = rows_valid_result(
        KEY, "rows_valid", [outcome("schema"), outcome("write_info")], n_rows=10, n_records=5, n_rejected=0
    )
    assert result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["failure_cases"].value == 0
    assert result.metadata["pass_rate"].value == pytest.approx(1.0)
    assert result.metadata["rows"].value == 10 and result.metadata["records"].value == 5
    assert "failures_table" not in result.metadata and result.description is None


def test_rows_valid_warns_with_counts_per_check_and_column():
    outcomes = [
        outcome("schema", [("quantity", 3), ("city", 1)]),
        outcome("write_info", [("quantity", 2)]),
        outcome("clean"),
    ]
    result = rows_valid_result(KEY, "rows_valid", outcomes, n_rows=40, n_records=20, n_rejected=4)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN  # never blocks by itself
    assert result.metadata["failure_cases"].value == 6
    assert result.metadata["pass_rate"].value == pytest.approx(0.8)
    table = result.metadata["failures_table"].value
    rows = [(r.data["check"], r.data["column"], r.data["failures"]) for r in table.records]
    assert rows == [
        ("schema", "quantity", 3),
        ("write_info", "quantity", 2),
        ("schema", "city", 1),
    ]  # largest first
    assert "| schema | quantity | 3 |" in result.metadata["failures_by_check_and_column"].value
    assert "quantity" in result.metadata["sample_failure_cases"].value
    assert result.description == "schema: 2 columns fail; write_info: 1 columns fail"  # the failed ones only


def test_failure_counts_fill_missing_columns_and_sum():
    plain = CheckOutcome(
        name="frame_check",
        passed=False,
        severity="WARN",
        description="",
        failures=pd.DataFrame({"failure_case": ["x", "y"]}),
    )  # no check/column/count columns
    counts = failure_counts([plain, outcome("schema", [("qty", 2)])])
    assert counts.to_dict("records") == [
        {"check": "frame_check", "column": "(frame)", "failures": 2},
        {"check": "schema", "column": "qty", "failures": 2},
    ]
    assert failure_counts([]).empty and list(failure_counts([]).columns) == ["check", "column", "failures"]
