"""Previews shown as Dagster metadata never show names, addresses, emails or phone numbers."""

from __future__ import annotations

import json

from trackstar_dagster.mapping import MappingConfig, build_payloads
from trackstar_dagster.mapping.previews import (
    counts_per_connection,
    dry_run_report,
    mask_body,
    preview_bodies,
    top_reject_reasons,
)

from .conftest import ORDER_FIELDS, order_rows

PERSONAL = ["Ann Lee", "1 Main St", "ann@example.com", "+1 555 0100", "Lee Holdings"]


def test_mask_body_hides_personal_fields_at_any_depth():
    body = {
        "ship_to_address": {
            "full_name": "Ann Lee",
            "first_name": "Ann",
            "last_name": "Lee",
            "company": "Lee Holdings",
            "address1": "1 Main St",
            "email_address": "a@b.c",
            "phone_number": "555",
            "postal_code": "02134",
            "city": "Boston",
        },
        "bill_to_address": {"email": "x@y.z", "phone": "1"},
        "line_items": [{"sku": "S"}],
    }
    masked = json.dumps(mask_body(body))
    for secret in ["Ann Lee", "Lee Holdings", "1 Main St", "a@b.c", "x@y.z", "02134"]:
        assert secret not in masked
    out = mask_body(body)
    assert out["ship_to_address"]["postal_code"] == "02***"
    assert out["ship_to_address"]["city"] == "Boston" and out["line_items"] == [{"sku": "S"}]


def _batch(targets):
    fields = dict(ORDER_FIELDS)
    fields["ship_to_address.company"] = "company"
    cfg = MappingConfig(key="order_id", connection="acme", fields=fields)
    frame = order_rows(3, 1, company=["Lee Holdings"] * 3)
    frame.loc[2, "qty"] = 0
    frame.loc[2, "name"] = "Ann Lee"
    return build_payloads(frame, cfg, targets)


def test_body_preview_is_masked(targets):
    text = preview_bodies(_batch(targets).payloads, n=5)
    assert "O0" in text and "02***" in text
    for secret in PERSONAL:
        assert secret not in text


def test_reject_reasons_are_counted_and_values_of_personal_fields_masked(targets):
    batch = _batch(targets)
    text = top_reject_reasons(batch.rejects)
    assert "line_items.quantity" in text and "| 1 |" in text
    for secret in PERSONAL:
        assert secret not in text


def test_counts_per_connection(targets):
    counts = counts_per_connection(_batch(targets).payloads, _batch(targets).rejects)
    assert counts.to_dict("records") == [{"connection": "acme", "payloads": 2, "rejected": 1}]


def test_dry_run_report_says_what_would_be_sent(targets):
    report = dry_run_report(_batch(targets))
    assert "nothing was sent" in report and "**2**" in report and "**1**" in report
    for secret in PERSONAL:
        assert secret not in report
