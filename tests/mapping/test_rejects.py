"""Rejects show what was in the cell, and say which count is records and which is rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trackstar_dagster.mapping import MappingConfig, build_payloads

from .conftest import ORDER_FIELDS, order_rows


@pytest.mark.parametrize(
    ("column", "rows", "field", "text"),
    [
        ("city", [2, 3], "ship_to_address.city", "NULL"),
        ("city", [2, 3], "ship_to_address.city", " n/a "),
        ("product_id", [2], "line_items.product_id", "NULL"),
        ("product_id", [3], "line_items.product_id", "none"),
    ],
)
def test_a_required_field_holding_a_null_like_text_shows_that_text(
    targets, config, column, rows, field, text
):
    frame = order_rows(3, 2)
    frame[column] = frame[column].astype(object)
    frame.loc[rows, column] = text
    batch = build_payloads(frame, config, targets)
    assert list(batch.payloads["key"]) == ["O0", "O2"]
    rej = batch.rejects[batch.rejects["field"] == field]
    assert len(rej) == 1 and "missing" in rej["reason"].iloc[0]
    assert rej["value"].iloc[0] == text


def test_a_required_field_that_is_really_empty_shows_no_value(targets, config):
    frame = order_rows(3, 2)
    frame["city"] = frame["city"].astype(object)
    frame.loc[[2, 3], "city"] = [None, np.nan]
    batch = build_payloads(frame, config, targets)
    rej = batch.rejects[batch.rejects["field"] == "ship_to_address.city"]
    assert len(rej) == 1 and pd.isna(rej["value"].iloc[0])


def test_a_rule_failure_shows_the_original_value(targets, config):
    frame = order_rows(3, 2)
    frame["qty"] = frame["qty"].astype(object)
    frame.loc[2, "qty"] = " 0 "  # text, read as the number 0, which is below the minimum
    batch = build_payloads(frame, config, targets)
    rej = batch.rejects[batch.rejects["field"] == "line_items.quantity"]
    assert ">= 1" in rej["reason"].iloc[0] and rej["value"].iloc[0] == " 0 "


def test_the_checks_show_the_original_value_masked_where_personal(targets, config):
    frame = order_rows(3, 2)
    frame["city"] = frame["city"].astype(object)
    frame.loc[[2, 3], "city"] = "NULL"
    frame.loc[4, "name"] = "x" * 300  # O2's rows disagree on a personal field: a conflict, its sample masked
    frame.loc[5, "name"] = "Bob Roe"
    batch = build_payloads(frame, config, targets)
    cases = [c for o in batch.checks for s in o.failures["sample"] for c in (x["failure_case"] for x in s)]
    assert "NULL" in cases
    assert not any("Bob Roe" in str(c) or "xxxx" in str(c) for c in cases)


def test_rejected_records_and_reject_rows_are_both_said(targets, config):
    frame = order_rows(4, 2)
    frame["qty"] = frame["qty"].astype(object)
    frame["city"] = frame["city"].astype(object)
    frame.loc[[2, 3], "city"] = "NULL"  # O1: two reasons
    frame.loc[2, "qty"] = 0
    frame.loc[4, "qty"] = "x"  # O2: one reason
    batch = build_payloads(frame, config, targets)
    assert set(batch.rejects["key"]) == {"O1", "O2"}
    assert batch.rejected_records == 2
    assert batch.reject_rows == len(batch.rejects) == 3
    assert batch.reject_counts == {"rejected_records": 2, "reject_rows": 3}
    clean = build_payloads(order_rows(2, 1), config, targets)
    assert clean.reject_counts == {"rejected_records": 0, "reject_rows": 0}


def test_a_failing_constant_that_filled_a_null_like_cell_shows_the_constant(targets):
    cfg = MappingConfig(
        key="order_id", connection="acme", fields=dict(ORDER_FIELDS), constants={"line_items.quantity": 0}
    )
    frame = order_rows(2, 1)
    frame["qty"] = frame["qty"].astype(object)
    frame.loc[1, "qty"] = "NULL"  # O1's quantity: the constant 0 fills it, and 0 fails the minimum
    batch = build_payloads(frame, cfg, targets)
    rej = batch.rejects[batch.rejects["field"] == "line_items.quantity"]
    assert rej["key"].tolist() == ["O1"] and rej["value"].tolist() == ["0"]
