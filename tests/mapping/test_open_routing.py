"""Open routing: ``connection_column`` without ``connection_values`` (or ``"*"``) holds the connection name
itself, so hundreds of connections need no line each; a row naming no configured connection is a reject."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.mapping import MappingConfig, Target, build_payloads
from trackstar_dagster.mapping.validation import PayloadsModel, RejectsModel

from .conftest import ORDER_FIELDS, order_rows


def open_config(**extra) -> MappingConfig:
    return MappingConfig(key="order_id", connection_column="customer", fields=dict(ORDER_FIELDS), **extra)


def test_star_and_omitted_values_both_mean_the_column_names_the_connection():
    star = MappingConfig.from_yaml(
        "key: order_id\nconnection_column: customer\nconnection_values: '*'\nfields: {order_number: order_id}\n"
    )
    omitted = MappingConfig.from_yaml(
        "key: order_id\nconnection_column: customer\nfields: {order_number: order_id}\n"
    )
    for config in (star, omitted):
        assert config.open_routing
        assert config.connections() == []  # named explicitly: none
    assert not open_config(connection_values={"A": "acme"}).open_routing
    with pytest.raises(ConfigError, match="needs `connection_column`"):
        MappingConfig.from_yaml("key: k\nconnection: a\nconnection_values: {x: a}\nfields: {a: b}\n")


def test_connections_for_are_the_configured_ones_the_rows_name():
    frame = order_rows(5, 1, customer=["acme", "ACME ", "globex", "nope", None])
    config = open_config()
    assert config.connections_for(frame, ["acme", "globex", "hero", "zeta"]) == ["acme", "globex"]
    # connection constants are always resolved: a name no connection has fails the plan instead of idling
    with_consts = open_config(connection_constants={"hero": {"shipping_method": "ground"}})
    assert with_consts.connections_for(frame, ["acme", "globex", "hero"]) == ["acme", "globex", "hero"]
    # explicit routing: what the config names, whatever the rows hold
    explicit = open_config(connection_values={"X": "acme"})
    assert explicit.connections_for(frame, []) == ["acme"]


def test_each_row_goes_to_the_connection_it_names_and_unknown_names_are_rejects(targets):
    frame = order_rows(
        5, 2, customer=["acme"] * 2 + ["GLOBEX"] * 2 + ["globex"] * 2 + ["nope"] * 2 + [None] * 2
    )
    batch = build_payloads(frame, open_config(), targets)
    by_key = dict(zip(batch.payloads["key"], batch.payloads["connection"], strict=True))
    assert by_key == {"O0": "acme", "O1": "globex", "O2": "globex"}  # GLOBEX is globex
    rejects = batch.rejects.set_index("key")
    assert rejects.loc["O3", "reason"] == "customer: routing value names no configured connection"
    assert rejects.loc["O3", "value"] == "nope" and rejects.loc["O3", "source_rows"] == [6, 7]
    assert rejects.loc["O4", "reason"] == "customer: routing value is empty"
    assert batch.records == 5 and batch.rejected_records == 2  # nothing dropped silently


def test_three_hundred_connections_route_without_a_line_each(sandbox_doc):
    names = [f"customer_{i:03d}" for i in range(300)]
    targets = {n: Target(n, "wms", "wms_sandbox", sandbox_doc) for n in names}
    frame = order_rows(300, 1, customer=names)
    config = open_config()
    assert config.connections_for(frame, names) == names
    batch = build_payloads(frame, config, targets)
    assert len(batch.payloads) == 300 and batch.rejected_records == 0
    assert (batch.payloads["connection"] == pd.Series(names)).all()
    assert json.loads(batch.payloads["body"][7])["order_number"] == "O7"


def test_no_configured_connection_in_the_rows_rejects_every_record(targets):
    frame = order_rows(2, 1, customer=["nope", "gone"])
    config = open_config()
    assert config.connections_for(frame, list(targets)) == []
    batch = build_payloads(frame, config, {})
    assert len(batch.payloads) == 0 and batch.rejected_records == 2
    assert set(batch.rejects["reason"]) == {"customer: routing value names no configured connection"}
    PayloadsModel.validate(batch.payloads)  # the sync's contract holds for an empty batch too
    RejectsModel.validate(batch.rejects)


def test_ambiguous_case_only_matches_exactly(sandbox_doc):
    targets = {n: Target(n, "wms", "wms_sandbox", sandbox_doc) for n in ("Acme", "acme")}
    frame = order_rows(3, 1, customer=["ACME", "Acme", "acme"])
    batch = build_payloads(frame, open_config(), targets)
    assert dict(zip(batch.payloads["key"], batch.payloads["connection"], strict=True)) == {
        "O1": "Acme",
        "O2": "acme",
    }
    assert batch.rejects["key"].tolist() == ["O0"]
