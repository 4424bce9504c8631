"""A record's identity in its body: unambiguous composite keys, NUL keys refused, namespaced tags, the tag column.

The rules themselves live in ``trackstar_dagster.base.keys``; these tests check that ``build_payloads`` follows them
on every path (the vectorised tag text and the per-key one) and that bodies without a namespace are the first
release's, byte for byte.
"""

from __future__ import annotations

import copy
import json
import logging

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from trackstar_dagster.base import keys
from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.base.keys import key_tag
from trackstar_dagster.mapping import PAYLOAD_COLUMNS, MappingConfig, Target, build_payloads
from trackstar_dagster.mapping.validation import PayloadsModel

from .conftest import ORDER_FIELDS, order_rows

NS = "nightly-orders"


def _cfg(**kw) -> MappingConfig:
    kw.setdefault("key", "order_id")
    kw.setdefault("connection", "acme")
    kw.setdefault("fields", dict(ORDER_FIELDS))
    return MappingConfig(**kw)


def _bodies(batch) -> dict[str, dict]:
    return {k: json.loads(b) for k, b in zip(batch.payloads["key"], batch.payloads["body"], strict=True)}


def _tagless(doc: dict) -> dict:
    """The sandbox document with ``trackstar_tags`` removed from the order body."""
    out = copy.deepcopy(doc)
    del out["components"]["schemas"]["CreatewmsOrder--WMS_Sandbox--"]["properties"]["trackstar_tags"]
    return out


def _assert_tags_match_bodies(batch) -> None:
    """The ``tag`` column is the key tag put in each body (and only that), or null when there is none."""
    for tag, body in zip(batch.payloads["tag"], batch.payloads["body"], strict=True):
        tags = json.loads(body).get("trackstar_tags") or []
        if pd.isna(tag):
            assert not any(isinstance(t, str) and t.startswith("tsd:") for t in tags)
        else:
            assert tags[-1] == tag


# -- (a) composite keys ----------------------------------------------------------------------------------


def test_composite_keys_that_differ_only_by_a_pipe_stay_two_records(targets):
    cfg = _cfg(key=["order_id", "shop"])
    frame = order_rows(2, 1, order_id=["a|b", "a"], shop=["c", "b|c"])
    batch = build_payloads(frame, cfg, targets)
    assert not len(batch.rejects)
    assert list(batch.payloads["key"]) == [keys.encode_key(["a|b", "c"]), keys.encode_key(["a", "b|c"])]
    assert list(batch.payloads["key"]) == ["a\\|b|c", "a|b\\|c"]
    assert [list(r) for r in batch.payloads["source_rows"]] == [[0], [1]]
    tags = list(batch.payloads["tag"])
    assert tags[0] != tags[1]
    assert tags == [key_tag("create_order", k) for k in batch.payloads["key"]]
    _assert_tags_match_bodies(batch)


def test_composite_key_parts_with_backslashes_are_escaped_and_plain_parts_read_as_before(targets):
    cfg = _cfg(key=["order_id", "shop"])
    frame = order_rows(3, 1, order_id=["a\\", "a", "O2"], shop=["b", "\\b", "s1"])
    batch = build_payloads(frame, cfg, targets)
    assert list(batch.payloads["key"]) == [
        "a\\\\|b",
        "a|\\\\b",
        "O2|s1",
    ]  # the last as the first release wrote it
    assert len(set(batch.payloads["tag"])) == 3


PART = st.text(alphabet="a|\\", min_size=1, max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(PART, PART), min_size=1, max_size=8))
def test_composite_keys_are_one_record_per_distinct_tuple_of_parts(targets, pairs):
    cfg = _cfg(key=["order_id", "shop"], fields={**ORDER_FIELDS, "order_number": "ref"})
    distinct = list(dict.fromkeys(pairs))
    frame = order_rows(
        len(pairs),
        1,
        order_id=[a for a, _ in pairs],
        shop=[b for _, b in pairs],
        ref=[f"R{distinct.index(p)}" for p in pairs],
    )
    batch = build_payloads(frame, cfg, targets)
    assert not len(batch.rejects) and batch.records == len(distinct)
    assert list(batch.payloads["key"]) == [keys.encode_key(p) for p in distinct]
    for p, rows in zip(distinct, batch.payloads["source_rows"], strict=True):
        assert {pairs[i] for i in rows} == {p}


# -- (b) NUL keys -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("composite", [False, True])
def test_a_nul_key_is_a_reject_with_its_reason_and_the_other_records_go_out(targets, composite):
    cfg = _cfg(key=["order_id", "shop"] if composite else "order_id")
    frame = order_rows(3, 2, shop=["s"] * 6)
    frame.loc[[2, 3], "order_id"] = "O\x001"
    batch = build_payloads(frame, cfg, targets)
    sent = ["O0|s", "O2|s"] if composite else ["O0", "O2"]
    assert list(batch.payloads["key"]) == sent
    assert not batch.payloads["body"].str.contains("\\u0000", regex=False).any()
    rej = batch.rejects[batch.rejects["reason"] == keys.key_problem("O\x001")]
    assert len(rej) == 1 and batch.rejected_records == 1
    row = rej.iloc[0]
    assert row["key"] == ("O\x001|s" if composite else "O\x001")
    assert row["field"] == ("order_id+shop" if composite else "order_id")
    assert "NUL" in row["reason"] and list(row["source_rows"]) == [2, 3]
    assert "\x00" not in row["value"]  # shown readably, the key column keeps the exact text


# -- (c) namespaced tags ----------------------------------------------------------------------------------


def test_bodies_carry_the_namespaced_tag(targets):
    batch = build_payloads(order_rows(2, 1), _cfg(tag_namespace=NS), targets)
    b = _bodies(batch)
    assert b["O0"]["trackstar_tags"] == [f"tsd:{NS}:create_order:O0"] == [key_tag("create_order", "O0", NS)]
    assert list(batch.payloads["tag"]) == [f"tsd:{NS}:create_order:O0", f"tsd:{NS}:create_order:O1"]


@pytest.mark.parametrize("namespace", [None, NS])
def test_a_600_character_key_gets_a_hashed_tag_and_a_payload(targets, namespace):
    fields = {**ORDER_FIELDS, "order_number": "ref"}
    long_key = "K" * 600
    frame = order_rows(2, 1, order_id=[long_key, "O1"], ref=["R0", "R1"])
    batch = build_payloads(frame, _cfg(fields=fields, tag_namespace=namespace), targets)
    assert not len(batch.rejects)
    assert list(batch.payloads["key"]) == [long_key, "O1"]
    tag = batch.payloads["tag"].iloc[0]
    assert len(tag) < 255 and long_key not in tag and ":h:" in tag
    assert tag == key_tag("create_order", long_key, namespace)
    assert batch.payloads["tag"].iloc[1] == key_tag("create_order", "O1", namespace)
    _assert_tags_match_bodies(batch)


@pytest.mark.parametrize("namespace", [None, NS])
@pytest.mark.parametrize(
    "odd",
    [
        'q"uote',
        "back\\slash",
        "tab\there",
        "h:looks-hashed",
        "x" * 100,
        "x" * 101,
        "y" * 103,
        "y" * 104,
        "línea-ü",
        "line\u2028sep",
    ],
)
def test_every_tag_path_gives_exactly_the_keys_module_tag(targets, namespace, odd):
    """One odd key sends the whole build down the per-key path; a plain build takes the vectorised one."""
    cfg = _cfg(tag_namespace=namespace)
    for ids in (["O0", odd, "O2"], ["O0", "O2"]):
        batch = build_payloads(order_rows(len(ids), 1, order_id=ids), cfg, targets)
        assert list(batch.payloads["key"]) == ids
        for k, tag, body in zip(
            batch.payloads["key"], batch.payloads["tag"], batch.payloads["body"], strict=True
        ):
            assert tag == key_tag("create_order", k, namespace)
            assert json.dumps(tag, ensure_ascii=False) in body  # orjson's text of the tag
            assert json.loads(body)["trackstar_tags"] == [tag]


def test_the_namespace_is_checked(targets):
    with pytest.raises(ValidationError, match="namespace"):
        _cfg(tag_namespace="has space")
    with pytest.raises(ConfigError, match="namespace"):
        MappingConfig.from_yaml("key: k\nconnection: acme\nfields: {a: b}\ntag_namespace: 'a:b'\n")
    assert (
        MappingConfig.from_yaml(
            "key: k\nconnection: acme\nfields: {a: b}\ntag_namespace: s.1\n"
        ).tag_namespace
        == "s.1"
    )


def test_key_tag_is_the_keys_module_function():
    assert key_tag is keys.key_tag
    assert key_tag("create_order", "O1") == "tsd:create_order:O1"


# -- (d) the tag column ------------------------------------------------------------------------------------


def test_the_tag_column_is_the_tag_in_each_body_or_null(targets, sandbox_doc):
    targets = {**targets, "plain": Target("plain", "wms", "wms_sandbox", _tagless(sandbox_doc))}
    cfg = MappingConfig(
        key="order_id",
        connection_column="customer",
        connection_values={"ACME": "acme", "PLAIN": "plain"},
        fields=dict(ORDER_FIELDS),
        connection_constants={"acme": {"trackstar_tags": ["nightly"]}},
        tag_namespace=NS,
    )
    frame = order_rows(4, 1, customer=["ACME", "PLAIN", "ACME", "PLAIN"])
    batch = build_payloads(frame, cfg, targets)
    assert list(batch.payloads.columns) == list(PAYLOAD_COLUMNS) and "tag" in PAYLOAD_COLUMNS
    PayloadsModel.validate(batch.payloads)
    got = dict(zip(batch.payloads["key"], batch.payloads["tag"], strict=True))
    assert got["O0"] == f"tsd:{NS}:create_order:O0" and got["O2"] == f"tsd:{NS}:create_order:O2"
    assert pd.isna(got["O1"]) and pd.isna(got["O3"])
    b = _bodies(batch)
    assert b["O0"]["trackstar_tags"] == ["nightly", got["O0"]]
    _assert_tags_match_bodies(batch)


def test_the_tag_column_is_null_when_tagging_is_off(targets):
    batch = build_payloads(order_rows(2, 1), _cfg(key_tag=False, tag_namespace=NS), targets)
    assert batch.payloads["tag"].isna().all()
    PayloadsModel.validate(batch.payloads)


def test_an_empty_batch_has_the_tag_column(targets):
    frame = order_rows(1, 1)
    frame["qty"] = 0
    batch = build_payloads(frame, _cfg(), targets)
    assert not len(batch.payloads) and list(batch.payloads.columns) == list(PAYLOAD_COLUMNS)
    assert "tag" in batch.payloads.columns
    PayloadsModel.validate(batch.payloads)


# -- (e) untagged connections ----------------------------------------------------------------------------


def test_untagged_connections_are_listed_and_warned_once(targets, sandbox_doc, caplog):
    targets = {**targets, "plain": Target("plain", "wms", "wms_sandbox", _tagless(sandbox_doc))}
    cfg = MappingConfig(
        key="order_id",
        connection_column="customer",
        connection_values={"ACME": "acme", "PLAIN": "plain"},
        fields=dict(ORDER_FIELDS),
    )
    frame = order_rows(2, 1, customer=["ACME", "PLAIN"])
    with caplog.at_level(logging.WARNING, logger="trackstar_dagster"):
        batch = build_payloads(frame, cfg, targets)
    assert batch.untagged_connections == ["plain"]
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "plain" in r.getMessage()]
    assert len(warned) == 1
    msg = warned[0].getMessage()
    assert "cannot be proven" in msg and "ledger" in msg and "acme" not in msg


def test_switching_the_key_tag_off_lists_every_connection(targets, caplog):
    cfg = MappingConfig(
        key="order_id",
        connection_column="customer",
        connection_values={"ACME": "acme", "GLOBEX": "globex"},
        fields=dict(ORDER_FIELDS),
        key_tag=False,
    )
    with caplog.at_level(logging.WARNING, logger="trackstar_dagster"):
        batch = build_payloads(order_rows(2, 1, customer=["ACME", "GLOBEX"]), cfg, targets)
    assert batch.untagged_connections == ["acme", "globex"]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_tagged_builds_do_not_warn(targets, config, caplog):
    with caplog.at_level(logging.WARNING, logger="trackstar_dagster"):
        batch = build_payloads(order_rows(2, 1), config, targets)
    assert batch.untagged_connections == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- no namespace: the first release's bodies, byte for byte ----------------------------------------------

# body_hash values computed with the code before namespaces, composite-key escaping and the tag column.
FIRST_RELEASE_HASHES = {
    "simple": {
        "O0": "6c80e77a993e9da0b69d14d44486fd5ac4f2f688895efa6c1c9c370f737ee46e",
        "O1": "c61a11dac4cac98ef2bfa3bc9f6473908bc74b2e925f54ea522944755039b76d",
    },
    "odd keys": {
        "L" * 150: "607bdc5710d646256a108260a4f855f0b818e9b0fa765f06d8957280a2817e28",
        'q"uote': "3d4858c0701b0837bcf8dac99ab77ec129346722a1e621986fccada4e2f2a5bd",
        "O2": "0a8f7f4ace886b1ed0c6f7cd73ef307c7194a14e7d752db6596720cfc07b4de5",
    },
    "composite with constant tags": {
        "O0|s1": "52ba9d9093da2f2ab24c3e1ccb81723016d988e00b55c4a5ffaac99875ae4058",
        "O0|s2": "db5fd4309d679203c45bde57e3c9f5b9b48baad73d51fdf3fd30cd4833abb3da",
    },
}


def test_bodies_without_a_namespace_are_the_first_releases_byte_for_byte(targets):
    cases = {
        "simple": (_cfg(), order_rows(2, 2)),
        "odd keys": (_cfg(), order_rows(3, 1, order_id=["L" * 150, 'q"uote', "O2"])),
        "composite with constant tags": (
            _cfg(key=["order_id", "shop"], constants={"trackstar_tags": ["nightly"]}),
            order_rows(1, 2, shop=["s1", "s2"]),
        ),
    }
    for name, (cfg, frame) in cases.items():
        batch = build_payloads(frame, cfg, targets)
        assert (
            dict(zip(batch.payloads["key"], batch.payloads["body_hash"], strict=True))
            == FIRST_RELEASE_HASHES[name]
        ), name
    body = build_payloads(order_rows(1, 1), _cfg(), targets).payloads["body"].iloc[0]
    assert body.endswith(',"trackstar_tags":["tsd:create_order:O0"]}')
