"""Flat-frame checks (pandera) and their structured failure summaries."""

from __future__ import annotations

import pandas as pd

from trackstar_dagster.mapping import MappingConfig, Target, build_payloads, validation
from trackstar_dagster.mapping.fieldspec import FieldSpec
from trackstar_dagster.mapping.validation import (
    BaseOrderRowsModel,
    check_reason,
    failure_summary,
    field_specs,
    integration_schema,
    run_schema,
)
from trackstar_dagster.schema.validator import body_validator

from .conftest import ORDER_FIELDS, load_doc, order_rows


def test_base_model_checks_quantities_and_prices():
    frame = pd.DataFrame(
        {
            "line_items.quantity": pd.array([1, 0, -2, None], dtype="Int64"),
            "line_items.unit_price": pd.array([1.0, -1.0, 0.0, None], dtype="Float64"),
        }
    )
    fc = run_schema(BaseOrderRowsModel, frame)
    got = {(c, int(i)) for c, i in zip(fc["column"], fc["index"], strict=True)}
    assert got == {("line_items.quantity", 1), ("line_items.quantity", 2), ("line_items.unit_price", 1)}


def test_base_model_wants_real_string_keys():
    frame = pd.DataFrame({"key": pd.Series(["a", None], dtype="str")})
    fc = run_schema(BaseOrderRowsModel, frame)
    assert list(fc["check"]) == ["not_nullable"]


def test_integration_schema_from_write_info_checks_required_fields_and_enums():
    doc = load_doc("masonhub")
    specs, required, complete = field_specs(
        doc, "wms", "masonhub", "create_order", ["type", "ship_to_address.city", "line_items.sku"]
    )
    assert "line_items.sku" in required and specs["ship_to_address.city"].required
    assert "customer" in specs["type"].enum
    schema = integration_schema(specs, "masonhub")
    frame = pd.DataFrame(
        {
            "type": pd.Series(["customer", "gift"], dtype="str"),
            "ship_to_address.city": pd.Series(["Boston", None], dtype="str"),
        }
    )
    fc = run_schema(schema, frame)
    reasons = {check_reason(c, col, "masonhub") for c, col in zip(fc["check"], fc["column"], strict=True)}
    assert reasons == {
        "type: not one of the values masonhub accepts",
        "ship_to_address.city: required by masonhub but missing",
    }


def test_max_length_from_write_info_is_checked_per_row():
    doc = load_doc("camelot")
    targets = {"c": Target("c", "wms", "camelot", doc)}
    fields = {
        k: v for k, v in ORDER_FIELDS.items() if k not in ("line_items.product_id", "line_items.unit_price")
    }
    fields["line_items.sku"] = "product_id"
    cfg = MappingConfig(
        key="order_id", connection="c", fields=fields, constants={"ship_to_address.address2": "-"}
    )
    frame = order_rows(2, 1, city=["Boston", "X" * 31])
    batch = build_payloads(frame, cfg, targets, validate_bodies="all")
    assert list(batch.payloads["key"]) == ["O0"]
    assert "longer than 30" in batch.rejects["reason"].iloc[0]


def test_failure_summary_counts_per_check_and_column_with_a_sample():
    fc = pd.DataFrame(
        {
            "check": ["ge(1)", "ge(1)", "not_nullable"],
            "column": ["q", "q", "sku"],
            "failure_case": ["0", "-1", None],
            "index": [3, 7, 9],
        }
    )
    summary = failure_summary(fc)
    assert list(summary.columns) == ["check", "column", "count", "failure_case", "index", "sample"]
    first = summary.iloc[0]
    assert (first["check"], first["column"], first["count"], first["index"]) == ("ge(1)", "q", 2, 3)
    assert [s["failure_case"] for s in first["sample"]] == ["0", "-1"]
    assert failure_summary(fc.iloc[:0]).empty


def test_checks_come_back_as_plain_outcomes_with_structured_failures(targets, config):
    frame = order_rows(2, 2)
    frame.loc[0, "qty"] = 0
    batch = build_payloads(frame, config, targets)
    by_name = {c.name: c for c in batch.checks}
    base = by_name["base_schema_rows"]
    assert not base.passed and base.severity in ("WARN", "ERROR")
    assert base.failures.iloc[0]["column"] == "line_items.quantity"
    assert base.failures.iloc[0]["count"] == 1
    assert by_name["bodies"].passed


def test_field_spec_reads_type_and_format():
    specs, _, _ = field_specs(
        load_doc("ongoing_wms"),
        "wms",
        "ongoing_wms",
        "create_order",
        ["delivery_date", "line_items.quantity", "nope"],
    )
    assert specs["delivery_date"] == FieldSpec("delivery_date", "string", "date-time", required=True)
    assert specs["line_items.quantity"].type == "integer"
    assert specs["nope"].type is None


def test_body_validators_come_from_the_schema_layer_cache(sandbox_doc):
    """One cache of compiled validators (``schema.validator``), none of the mapping's own."""
    assert validation.validator_for(sandbox_doc, "create_order") is body_validator(
        sandbox_doc, "create_order"
    )


def test_hundreds_of_connections_share_one_field_table_and_the_caches_stay_bounded():
    """500 connections of one integration: each run loads its own copy of the same write-info document.
    Their field tables are one computation, and a long-lived process does not keep every copy it saw."""
    import copy
    import gc
    import weakref

    from trackstar_dagster.schema import validator as validator_module

    doc = load_doc("wms_sandbox")
    first = validation.fields_for(doc, "wms", "wms_sandbox", "create_order")

    class Doc(dict):  # a dict that can be watched with a weak reference
        pass

    watched = []
    for _ in range(3):  # three "runs" of 500 connections, fresh documents each time
        for _ in range(500):
            copy_ = Doc(copy.deepcopy(doc))
            watched.append(weakref.ref(copy_))
            assert validation.fields_for(copy_, "wms", "wms_sandbox", "create_order") is first
            body_validator(copy_, "create_order")
    gc.collect()
    alive = sum(ref() is not None for ref in watched)
    assert alive <= validator_module.DIGEST_CACHE_SIZE
    assert len(validator_module._DIGESTS) <= validator_module.DIGEST_CACHE_SIZE
