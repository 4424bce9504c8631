"""Connections declared in bulk (env prefix, file, function): what is read, and every mistake a clear error
that names where it is (the variable, the file's entry, the function's item), never a token."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from trackstar_dagster import resource as resource_module
from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.base.redaction import redact, redacted_logger
from trackstar_dagster.connections import ConnectionsFileWarning, from_env, from_file, from_function
from trackstar_dagster.resource import (
    PlainSecretWarning,
    ResolvedConnection,
    TrackstarConnection,
    TrackstarResource,
)

PREFIX = "TSD_TEST_CONN_"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in list(os.environ):
        if var.startswith(PREFIX):
            monkeypatch.delenv(var)
    resource_module._PLAIN_SECRETS_WARNED.clear()
    yield
    resource_module._PLAIN_SECRETS_WARNED.clear()


def write_file(path: Path, data: Any, mode: int = 0o600) -> Path:
    path.write_text(json.dumps(data) if path.suffix == ".json" else _yaml(data))
    path.chmod(mode)
    return path


def _yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data)


# -- functions the tests name by import path --------------------------------------------------------------


def vault_connections() -> Iterator[Any]:
    """What a user's function may return: tuples, dicts and connection objects, mixed."""
    yield ("tuple_conn", "wms/wms_sandbox", "fn-token-tuple-0001")
    yield {"name": "dict_conn", "integration_name": "shipbob", "access_token": "fn-token-dict-0002"}
    yield TrackstarConnection(name="obj_conn", access_token="fn-token-obj-0003", integration_name="shiphero")


def two_values() -> list[Any]:
    return [("only", "fn-token-short-0004")]


def failing() -> list[Any]:
    raise RuntimeError("vault said no to https://vault/x?token=fn-token-in-url-0005")


def nothing() -> list[Any]:
    return []


# -- environment variables ---------------------------------------------------------------------------------


def test_env_prefix_reads_pairs_names_lower_case_and_type_slash_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{PREFIX}ACME_EU_TOKEN", "env-token-acme-0001")
    monkeypatch.setenv(f"{PREFIX}ACME_EU_INTEGRATION", "wms/shipbob")
    monkeypatch.setenv(f"{PREFIX}GLOBEX_TOKEN", "env-token-globex-0002")
    monkeypatch.setenv(f"{PREFIX}GLOBEX_INTEGRATION", "shiphero")
    monkeypatch.setenv(f"{PREFIX}HERO_TOKEN", "env-token-hero-0003")
    monkeypatch.setenv(f"{PREFIX}HERO_CONNECTION_ID", "conn-123")
    found = {c.name: c for c in from_env(PREFIX)}
    assert sorted(found) == ["acme_eu", "globex", "hero"]
    assert (found["acme_eu"].integration_type, found["acme_eu"].integration_name) == ("wms", "shipbob")
    assert (found["globex"].integration_type, found["globex"].integration_name) == ("wms", "shiphero")
    assert found["hero"].connection_id == "conn-123" and found["hero"].integration_name is None
    assert found["acme_eu"].access_token == "env-token-acme-0001"
    assert "env-token" not in repr(found)


@pytest.mark.parametrize(
    ("variables", "named", "missing"),
    [
        ({"ACME_INTEGRATION": "shipbob"}, "ACME_INTEGRATION", "ACME_TOKEN"),
        ({"ACME_CONNECTION_ID": "c1"}, "ACME_CONNECTION_ID", "ACME_TOKEN"),
        ({"ACME_TOKEN": "env-token-half-0009"}, "ACME_TOKEN", "ACME_INTEGRATION"),
        ({"ACME_TOKN": "env-token-typo-0010"}, "ACME_TOKN", "_TOKEN"),
        ({"ACME_TOKEN": "env-token-empty-int-0011", "ACME_INTEGRATION": " "}, "ACME_INTEGRATION", "empty"),
    ],
)
def test_half_a_pair_is_a_config_error_naming_the_variable_not_the_value(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str, missing: str
) -> None:
    for var, value in variables.items():
        monkeypatch.setenv(PREFIX + var, value)
    with pytest.raises(ConfigError) as exc:
        from_env(PREFIX)
    message = str(exc.value)
    assert PREFIX + named in message and missing in message
    for value in variables.values():
        if value.strip() and value.startswith("env-token"):
            assert value not in message


def test_a_typod_prefix_is_a_clear_error_and_not_an_empty_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{PREFIX}ACME_TOKEN", "env-token-acme-0001")
    monkeypatch.setenv(f"{PREFIX}ACME_INTEGRATION", "shipbob")
    with pytest.raises(ConfigError, match="no environment variable starts with it") as exc:
        from_env("TSD_TEST_CONNS_")
    assert f"{PREFIX}ACME_TOKEN" in str(exc.value)  # the hint: variables that look like tokens, by name
    assert "env-token-acme-0001" not in str(exc.value)


def test_names_differing_only_in_case_are_one_name_declared_twice() -> None:
    env = {f"{PREFIX}Acme_TOKEN": "t-0001-aaaa", f"{PREFIX}ACME_TOKEN": "t-0002-bbbb"}
    env |= {f"{PREFIX}Acme_INTEGRATION": "x", f"{PREFIX}ACME_INTEGRATION": "x"}
    with pytest.raises(ConfigError, match="both declare connection 'acme'"):
        from_env(PREFIX, env)


# -- a file ------------------------------------------------------------------------------------------------


def test_a_yaml_or_json_file_lists_connections(tmp_path: Path) -> None:
    entries = [
        {
            "name": "acme",
            "integration_type": "wms",
            "integration_name": "shipbob",
            "access_token": "file-token-0001",
        },
        {"name": "hero", "connection_id": "c-9", "access_token": "file-token-0002"},
        {"name": "cart", "integration": "cart/shopify", "access_token": "file-token-0003"},
    ]
    for path in (
        write_file(tmp_path / "c.yaml", entries),
        write_file(tmp_path / "c.json", {"connections": entries}),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # mode 600: no warning
            found = {c.name: c for c in from_file(path)}
        assert found["acme"].integration_name == "shipbob" and found["hero"].connection_id == "c-9"
        assert (found["cart"].integration_type, found["cart"].integration_name) == ("cart", "shopify")


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ({"name": "bad", "integration_name": "x"}, "access token is missing"),
        ({"name": "bad", "access_token": "file-token-bad-0007"}, "integration is unknown"),
        ({"name": "bad", "acess_token": "file-token-bad-0008", "integration_name": "x"}, "unknown key"),
        ({"access_token": "file-token-bad-0009", "integration_name": "x"}, "no name"),
    ],
)
def test_a_bad_entry_names_the_file_and_entry_not_the_token(tmp_path: Path, entry: dict, why: str) -> None:
    good = {"name": "good", "integration_name": "x", "access_token": "file-token-good-0006"}
    path = write_file(tmp_path / "c.yaml", [good, entry])
    with pytest.raises(ConfigError, match=why) as exc:
        from_file(path)
    assert f"{path} entry 1" in str(exc.value)
    assert "file-token" not in str(exc.value)


def test_a_file_readable_by_others_warns_and_a_broken_one_does_not_quote_its_lines(tmp_path: Path) -> None:
    entries = [{"name": "a", "integration_name": "x", "access_token": "file-token-0001"}]
    path = write_file(tmp_path / "c.yaml", entries, mode=0o644)
    with pytest.warns(ConnectionsFileWarning, match="chmod 600"):
        from_file(path)
    broken = tmp_path / "broken.yaml"
    broken.write_text("- name: a\n  access_token: file-token-broken-0002: [\n")
    broken.chmod(0o600)
    with pytest.raises(ConfigError, match="not valid YAML or JSON at line") as exc:
        from_file(broken)
    assert "file-token" not in str(exc.value)
    with pytest.raises(ConfigError, match="cannot read the connections file"):
        from_file(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="declares no connection"):
        from_file(write_file(tmp_path / "empty.yaml", []))


# -- a function --------------------------------------------------------------------------------------------


def test_a_function_returns_tuples_dicts_or_connections() -> None:
    found = {c.name: c for c in from_function(f"{__name__}:vault_connections")}
    assert sorted(found) == ["dict_conn", "obj_conn", "tuple_conn"]
    assert found["tuple_conn"].integration_name == "wms_sandbox"
    assert found["obj_conn"].access_token == "fn-token-obj-0003"


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("tests.dagster.test_connection_sources", "package.module:function"),
        ("tests.dagster.nowhere:f", "cannot import"),
        (f"{__name__}:missing", "has no missing"),
        (f"{__name__}:PREFIX", "not callable"),
        (f"{__name__}:two_values", "tuple of 2 values"),
        (f"{__name__}:failing", "raised RuntimeError"),
        (f"{__name__}:nothing", "returned no connection"),
    ],
)
def test_a_bad_function_is_a_clear_error(path: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as exc:
        from_function(path)
    assert "fn-token" not in str(exc.value)


# -- the resource ------------------------------------------------------------------------------------------


def test_sources_combine_with_the_explicit_list_and_a_name_twice_names_both_sources(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(f"{PREFIX}ENV_CONN_TOKEN", "env-token-0001")
    monkeypatch.setenv(f"{PREFIX}ENV_CONN_INTEGRATION", "shipbob")
    path = write_file(
        tmp_path / "c.yaml", [{"name": "file_conn", "integration_name": "x", "access_token": "ft-0002"}]
    )
    res = TrackstarResource(
        api_key="k",
        connections=[
            TrackstarConnection(
                name="listed", access_token=dg.EnvVar("UNSET_IN_THIS_TEST"), integration_name="y"
            )
        ],
        connections_from_env=PREFIX,
        connections_file=str(path),
        connections_function=f"{__name__}:vault_connections",
    )
    assert res.connection_names() == [
        "listed",
        "env_conn",
        "file_conn",
        "tuple_conn",
        "dict_conn",
        "obj_conn",
    ]
    assert res.connection("env_conn") == ResolvedConnection("env_conn", "env-token-0001", "wms", "shipbob")
    assert res.access_token("dict_conn") == "fn-token-dict-0002"
    assert [c.name for c in res.resolved_connections()][-1] == "obj_conn"

    monkeypatch.setenv(f"{PREFIX}FILE_CONN_TOKEN", "env-token-0003")
    monkeypatch.setenv(f"{PREFIX}FILE_CONN_INTEGRATION", "shipbob")
    twice = TrackstarResource(api_key="k", connections_from_env=PREFIX, connections_file=str(path))
    with pytest.raises(ConfigError, match="more than once") as exc:
        twice.connection_names()
    assert f"{PREFIX}FILE_CONN_TOKEN" in str(exc.value) and f"{path} entry 0" in str(exc.value)


def test_sources_are_read_at_run_time_once_and_their_tokens_redacted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # definitions load without the variables (the code server may not have them)
    res = TrackstarResource(api_key=dg.EnvVar("TRACKSTAR_API_KEY"), connections_from_env=PREFIX)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        dg.Definitions(resources={"trackstar": res})
        res.get_resource_definition()
    assert not [w for w in record if issubclass(w.category, PlainSecretWarning)]  # a prefix is no secret
    monkeypatch.setenv(f"{PREFIX}ACME_TOKEN", "env-token-redact-me-0001")
    monkeypatch.setenv(f"{PREFIX}ACME_INTEGRATION", "shipbob")
    assert res.connection_names() == ["acme"]
    monkeypatch.delenv(f"{PREFIX}ACME_TOKEN")  # read once per resource: no second read
    assert res.access_token("acme") == "env-token-redact-me-0001"
    assert "env-token-redact-me-0001" not in repr(res) + str(res)
    assert redact("sent env-token-redact-me-0001") == "sent ***"
    with caplog.at_level(logging.INFO):
        redacted_logger("trackstar_dagster.test").info("token %s", "env-token-redact-me-0001")
    assert "env-token-redact-me-0001" not in caplog.text


def test_an_unknown_name_lists_a_few_configured_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(30):
        monkeypatch.setenv(f"{PREFIX}C{i:02d}_TOKEN", f"env-token-{i:04d}")
        monkeypatch.setenv(f"{PREFIX}C{i:02d}_INTEGRATION", "shipbob")
    res = TrackstarResource(api_key="k", connections_from_env=PREFIX)
    with pytest.raises(ConfigError, match="no Trackstar connection named 'nope'.*'c19' and 10 more"):
        res.connection("nope")


def test_lookup_by_token_lets_a_token_come_without_its_integration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{PREFIX}ACME_TOKEN", "env-token-0001")
    with pytest.raises(ConfigError, match="neither"):
        TrackstarResource(api_key="k", connections_from_env=PREFIX).connection_names()
    res = TrackstarResource(api_key="k", connections_from_env=PREFIX, lookup_integration_by_token=True)
    assert res.connection_names() == ["acme"]
