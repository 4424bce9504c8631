"""The screen of unwritable cells on its own: what no JSON text can hold is refused, naming the path."""

from __future__ import annotations

import numpy as np

from trackstar_dagster.mapping.fieldspec import Coerced
from trackstar_dagster.mapping.unwritable import unwritable, writable


def _coerced(values: list, kind: str) -> Coerced:
    n = len(values)
    arr = np.array(values + [None], dtype=object)[:-1]  # keeps lists and dicts as single cells
    return Coerced(arr, np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), {}, kind)


def test_writable_values_come_back_as_the_same_object():
    c = _coerced(["a", "é", None], "string")
    assert writable(c, "reference_id") is c


def test_an_unwritable_value_is_refused_in_a_copy_naming_the_path():
    c = _coerced(["ok", "bad \ud800", None], "string")
    out = writable(c, "reference_id")
    assert out is not c and c.values[1] == "bad \ud800" and not c.bad.any()  # the input stays as it was
    assert out.values.tolist() == ["ok", None, None]
    assert out.bad.tolist() == [False, True, False]
    assert out.reasons == {1: "reference_id: text with a lone surrogate (not valid Unicode)"}


def test_objects_are_screened_for_what_json_cannot_hold():
    found = unwritable(_coerced([{"a": 1}, {"b": b"x"}, [2**70], 3], "object").values, "object")
    assert sorted(found) == [1, 2]
    assert found[2] == "holds an integer beyond the 64-bit range"
