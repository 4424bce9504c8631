"""Null-like values are dropped at every depth and never sent; real values survive."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from trackstar_dagster.base.nulls import NULL_LIKE_STRINGS, drop_empty, drop_empty_body, find_null_like
from trackstar_dagster.mapping import MappingConfig, build_payloads

from .conftest import ORDER_FIELDS, order_rows

NULL_FORMS = [None, np.nan, pd.NA, pd.NaT, float("nan"), *NULL_LIKE_STRINGS, " NULL ", "None", "N/A", "  "]


@pytest.mark.parametrize("null", NULL_FORMS, ids=repr)
def test_drop_empty_removes_a_null_like_value_at_every_depth(null):
    body = {"a": null, "b": {"c": null, "d": {"e": null}}, "f": [null, {"g": null}, [null]], "keep": 1}
    assert drop_empty(body) == {"keep": 1}


@pytest.mark.parametrize("value", ["None Such Ltd", 0, 0.0, False, "NA", "nil-ish", "null value"])
def test_real_values_survive(value):
    assert drop_empty({"a": value, "b": [value], "c": {"d": value}}) == {
        "a": value,
        "b": [value],
        "c": {"d": value},
    }


def test_empty_body_becomes_empty_dict():
    assert drop_empty_body({"a": None, "b": {"c": ""}}) == {}


@pytest.mark.parametrize(
    "null", [None, np.nan, "null", "NULL", " none ", "n/a", "", "  ", "undefined", "NaN"], ids=repr
)
def test_null_like_source_values_are_never_sent(null, targets):
    fields = dict(ORDER_FIELDS)
    fields["ship_to_address.company"] = "company"
    fields["line_items.sku"] = "sku"
    fields["line_items.discount_amount"] = "discount"
    config = MappingConfig(
        key="order_id",
        connection="acme",
        fields=fields,
        constants={"ship_to_address": {"address2": null}, "service_level": null},
    )
    frame = order_rows(
        2,
        2,
        company=[null, null, "None Such Ltd", "None Such Ltd"],
        sku=[null, "s1", null, "s2"],
        discount=[null, 0.0, null, 0.0],
    )
    frame["company"] = frame["company"].astype(object)
    batch = build_payloads(frame, config, targets, validate_bodies="all")
    assert len(batch.payloads) == 2 and not len(batch.rejects)
    for text in batch.payloads["body"]:
        body = json.loads(text)
        assert find_null_like(body) == []
        assert drop_empty_body(body) == body
        assert "service_level" not in body and "address2" not in body["ship_to_address"]
    second = json.loads(batch.payloads["body"].iloc[1])
    assert second["ship_to_address"]["company"] == "None Such Ltd"
    assert second["line_items"][1]["discount_amount"] == 0.0


def test_an_item_that_is_entirely_empty_is_left_out(targets, config):
    frame = order_rows(1, 3)
    frame.loc[1, ["product_id", "qty", "price"]] = [None, np.nan, np.nan]
    batch = build_payloads(frame, config, targets)
    body = json.loads(batch.payloads["body"].iloc[0])
    assert len(body["line_items"]) == 2


def test_na_country_is_a_value_not_a_null(targets, config):
    batch = build_payloads(order_rows(1, 1, country=["NA"]), config, targets)
    assert json.loads(batch.payloads["body"].iloc[0])["ship_to_address"]["country"] == "NA"
