"""The component's connection and secret settings, and the example project's secrets (EnvVars: no warning)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest

from trackstar_dagster import resource as resource_module
from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.component import TrackstarSyncComponent
from trackstar_dagster.resource import PlainSecretWarning, TrackstarResource


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    resource_module._PLAIN_SECRETS_WARNED.clear()
    yield
    resource_module._PLAIN_SECRETS_WARNED.clear()


def component(**changes: Any) -> TrackstarSyncComponent:
    attributes: dict[str, Any] = {
        "name": "orders_sync",
        "connections": [{"name": "acme", "access_token_env": "ACME_TOKEN", "integration_name": "shipbob"}],
        "source": {"table": "order_lines"},
        "mapping": {"action": "create_order", "key": "order_id", "connection": "acme", "fields": {}},
    }
    attributes.update(changes)
    return TrackstarSyncComponent.model_validate(attributes)


def test_component_connection_by_id_or_name_or_opt_in() -> None:
    by_id = component(
        connections=[{"name": "acme", "access_token_env": "ACME_TOKEN", "connection_id": "conn_1"}]
    )
    conn = by_id.trackstar_resource().connections[0]
    assert conn.connection_id == "conn_1" and conn.integration_name is None
    assert isinstance(conn.access_token, dg.EnvVar) and conn.access_token.env_var_name == "ACME_TOKEN"

    opted = component(
        connections=[{"name": "acme", "access_token_env": "ACME_TOKEN"}], lookup_integration_by_token=True
    )
    assert opted.trackstar_resource().lookup_integration_by_token is True

    with pytest.raises(ConfigError, match="'acme'.*integration_name.*connection_id"):
        component(connections=[{"name": "acme", "access_token_env": "ACME_TOKEN"}]).trackstar_resource()


def test_example_project_secrets_are_envvars_and_do_not_warn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from trackstar_example.definitions import defs as example_defs

    monkeypatch.setenv("TRACKSTAR_EXAMPLE_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        defs = example_defs() if callable(example_defs) else example_defs
        defs.get_repository_def()
    assert [str(w.message) for w in record if issubclass(w.category, PlainSecretWarning)] == []
    trackstar = defs.resources["trackstar"]
    assert isinstance(trackstar.api_key, dg.EnvVar)
    assert trackstar.connections and all(isinstance(c.access_token, dg.EnvVar) for c in trackstar.connections)


def test_component_connections_from_env_file_and_function_in_yaml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import json

    path = tmp_path / "connections.json"
    path.write_text(
        json.dumps([{"name": "filed", "integration_name": "shipbob", "access_token": "file-tok-0001"}])
    )
    path.chmod(0o600)
    comp = TrackstarSyncComponent.resolve_from_yaml(
        f"""
name: orders_sync
source: {{table: order_lines}}
mapping: {{action: create_order, key: order_id, connection_column: customer, fields: {{order_number: order_id}}}}
connections:
  - {{name: acme, access_token_env: ACME_TOKEN, integration_name: shipbob}}
connections_from:
  env_prefix: TSD_COMPONENT_CONN_
  file: {path}
  function: tests.dagster.test_connection_sources:vault_connections
"""
    )
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        res = comp.trackstar_resource()
        dg.Definitions(resources={"trackstar": res}).get_repository_def()
    assert [w for w in record if issubclass(w.category, PlainSecretWarning)] == []
    # only names in the resource's config; the sources are read when a run asks for a connection
    assert res.connections_from_env == "TSD_COMPONENT_CONN_" and res.connections_file == str(path)
    assert res.connections_function == "tests.dagster.test_connection_sources:vault_connections"
    monkeypatch.setenv("ACME_TOKEN", "acme-tok-0002")
    monkeypatch.setenv("TSD_COMPONENT_CONN_BETA_TOKEN", "env-tok-0003")
    monkeypatch.setenv("TSD_COMPONENT_CONN_BETA_CONNECTION_ID", "conn_beta")
    monkeypatch.setenv("TRACKSTAR_API_KEY", "key-0004")

    @dg.asset
    def names(trackstar: TrackstarResource) -> list[str]:
        return trackstar.connection_names()

    result = dg.materialize([names], resources={"trackstar": res})
    assert result.output_for_node("names") == [
        "acme",
        "beta",
        "filed",
        "tuple_conn",
        "dict_conn",
        "obj_conn",
    ]
