"""Typed errors per answer, and a 422's detail flattened to the dotted fields a reject names."""

from __future__ import annotations

import pytest

from trackstar_dagster.base.errors import (
    TrackstarAuthError,
    TrackstarError,
    TrackstarNotImplementedError,
    TrackstarRateLimitError,
    TrackstarServerError,
    TrackstarTransportError,
    TrackstarValidationError,
    error_class_for,
    flatten_detail,
)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, TrackstarAuthError),
        (403, TrackstarAuthError),
        (422, TrackstarValidationError),
        (429, TrackstarRateLimitError),
        (501, TrackstarNotImplementedError),
        (502, TrackstarServerError),
        (599, TrackstarServerError),
        (418, TrackstarError),
    ],
)
def test_each_status_has_its_error_class(status: int, cls: type[TrackstarError]) -> None:
    assert error_class_for(status) is cls


def test_a_422_detail_becomes_dotted_fields() -> None:
    detail = {
        "json": {"line_items": {"0": {"sku": ["Missing data for required field."]}}, "order_number": "bad"}
    }
    assert flatten_detail(detail) == {
        "line_items.0.sku": ["Missing data for required field."],
        "order_number": ["bad"],
    }
    assert flatten_detail([{"a": ["x"]}, ["y"]]) == {"0.a": ["x"], "1": ["y"]}
    assert flatten_detail(None) == {}


def test_outcome_unknown_where_a_write_may_have_taken_effect() -> None:
    assert TrackstarServerError("down", status=503).outcome_unknown
    assert TrackstarTransportError("timeout", sent=True).outcome_unknown
    assert not TrackstarTransportError("refused", sent=False).outcome_unknown
    assert not TrackstarValidationError("bad", status=422).outcome_unknown
