"""The records stage on its own: rows grouped into records by key and connection, and ``screen``'s refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trackstar_dagster.mapping import MappingConfig
from trackstar_dagster.mapping.coercion import ColumnCodes
from trackstar_dagster.mapping.plan import make_plan
from trackstar_dagster.mapping.records import Records, index_records, join, screen
from trackstar_dagster.mapping.rejects import Rejects

from .conftest import ORDER_FIELDS, order_rows


def _records(frame: pd.DataFrame, config: MappingConfig, targets) -> Records:
    plan = make_plan(frame, None, config, targets)
    work, src = join(frame, None, config, plan)
    return index_records(work, src, config, plan, ColumnCodes(work))


def _routed() -> MappingConfig:
    return MappingConfig(
        key="order_id",
        connection_column="customer",
        connection_values={"ACME": "acme", "HERO": "hero"},
        fields=dict(ORDER_FIELDS),
    )


def test_rows_of_one_key_and_connection_are_one_record_in_sorted_order(targets):
    frame = order_rows(2, 2).iloc[[0, 2, 1, 3]].reset_index(drop=True)  # O0, O1, O0, O1
    rs = _records(frame, MappingConfig(key="order_id", connection="acme", fields=dict(ORDER_FIELDS)), targets)
    assert rs.R == 2 and rs.n == 4
    assert rs.rec_key.tolist() == ["O0", "O1"]
    assert rs.rec_conn.tolist() == ["acme", "acme"]
    assert rs.source_rows(np.arange(rs.R)) == [[0, 2], [1, 3]]
    assert (rs.rec_sorted[rs.inv_order] == rs.rec_of_row).all()


def test_one_key_routed_to_two_connections_is_two_records(targets):
    frame = order_rows(1, 2, customer=["ACME", "HERO"])
    rs = _records(frame, _routed(), targets)
    assert rs.R == 2
    assert sorted(rs.rec_conn.tolist()) == ["acme", "hero"]
    assert rs.rec_group[rs.rec_conn == "acme"][0] != rs.rec_group[rs.rec_conn == "hero"][0]


def test_composite_keys_keep_their_parts_apart(targets):
    frame = order_rows(2, 1, order_id=["a|b", "a"], shop=["c", "b|c"])
    config = MappingConfig(key=["order_id", "shop"], connection="acme", fields=dict(ORDER_FIELDS))
    rs = _records(frame, config, targets)
    assert rs.R == 2
    assert len(set(rs.rec_key.tolist())) == 2


def test_screen_refuses_null_keys_bad_keys_and_unrouted_values_only(targets):
    frame = order_rows(
        4, 1, order_id=["O1", None, "bad\x00key", "O4"], customer=["ACME", "ACME", "ACME", "NOPE"]
    )
    config = _routed()
    rs = _records(frame, config, targets)
    alive, refusals = screen(rs, config)
    assert rs.rec_key[alive].tolist() == ["O1"]
    by_key = {rs.rec_key[r]: (field, reason, value) for r, field, reason, value in refusals}
    assert by_key[None] == ("order_id", "record key is null or empty", None)
    assert by_key["bad\x00key"][0] == "order_id" and by_key["bad\x00key"][2] == "bad\\x00key"
    assert by_key["O4"] == (
        "customer",
        "customer: routing value is not in connection_values (no connection for it)",
        "NOPE",
    )
    rejects = Rejects(rs)
    for refusal in refusals:
        rejects.reject(*refusal)
    assert rejects.refused().tolist() == (~alive).tolist()
    frame_ = rejects.frame()
    assert frame_["key"].tolist()[-1] == "O4" and frame_["source_rows"].tolist() == [[1], [2], [3]]
