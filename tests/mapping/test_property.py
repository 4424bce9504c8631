"""Random dirty frames: nothing escapes, every record lands in payloads xor rejects, every payload is valid."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trackstar_dagster.base.nulls import drop_empty_body, find_null_like
from trackstar_dagster.mapping import MappingConfig, build_payloads
from trackstar_dagster.schema.validator import body_validator

from .conftest import ORDER_FIELDS

NULLISH = [None, np.nan, "", " ", "null", "NULL", "None", "n/a", "undefined", "NaN"]
TEXT = st.sampled_from(
    ["Boston", " Austin ", "NA", "None Such Ltd", "x" * 40, 'Zoë "Q" \\', "1 Main St", *NULLISH]
)
NUMBER = st.sampled_from(
    [1, 2, 3, 0, -1, 2.5, 2.0, np.nan, np.inf, "3", " 4 ", "x", None, Decimal("1.50"), Decimal("2"), True]
)

CONFIG = MappingConfig(
    key="order_id",
    connection_column="customer",
    connection_values={"ACME": "acme", "GLOBEX": "globex", "HERO": "hero"},
    fields={**ORDER_FIELDS, "total_price": "total", "line_items.sku": "sku"},
    constants={"invoice_currency_code": "USD"},
    connection_constants={"globex": {"ship_to_address.country": "DE"}},
)

row = st.fixed_dictionaries(
    {
        "order_id": st.sampled_from(["A", "B", "C", " A ", "D", None, "null", ""]),
        "customer": st.sampled_from(["ACME", "GLOBEX", "HERO", " acme", "ZZZ", None]),
        "name": TEXT,
        "address1": TEXT,
        "city": TEXT,
        "state": TEXT,
        "zip": TEXT,
        "country": TEXT,
        "total": NUMBER,
        "sku": TEXT,
        "product_id": TEXT,
        "qty": NUMBER,
        "price": NUMBER,
        "ignored": st.sampled_from([None, "x", 1]),
    }
)


@st.composite
def frames(draw) -> pd.DataFrame:
    rows = draw(st.lists(row, min_size=0, max_size=25))
    frame = pd.DataFrame(rows, columns=list(row.mapping) if hasattr(row, "mapping") else None)
    if not len(frame):
        frame = pd.DataFrame(
            {c: pd.Series([], dtype=object) for c in ["order_id", "customer", *CONFIG.fields.values()]}
        )
    typed = draw(st.booleans())
    if typed and len(frame):  # sometimes real pandas 3 string / float columns instead of object
        for col in ("name", "city", "sku"):
            frame[col] = frame[col].astype("str")
        frame["qty"] = pd.to_numeric(frame["qty"], errors="coerce")
    return frame


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(frame=frames())
def test_every_record_lands_in_payloads_xor_rejects_and_payloads_are_valid(frame, targets):
    batch = build_payloads(frame, CONFIG, targets)
    sent = [tuple(r) for r in batch.payloads["source_rows"]]
    refused = {tuple(r) for r in batch.rejects["source_rows"]}
    assert len(sent) == len(set(sent))
    assert not set(sent) & refused
    covered = sorted(i for rec in [*sent, *refused] for i in rec)
    assert covered == list(range(len(frame)))  # every row in exactly one record, every record somewhere
    assert len(sent) + len(refused) == batch.records
    assert not batch.payloads.duplicated(["connection", "key"]).any()
    for conn, text in zip(batch.payloads["connection"], batch.payloads["body"], strict=True):
        body = json.loads(text)
        assert body_validator(targets[conn].doc, "create_order")(body) == []
        assert find_null_like(body) == [] and drop_empty_body(body) == body
    assert batch.rejects["reason"].notna().all() and batch.rejects["field"].notna().all()
