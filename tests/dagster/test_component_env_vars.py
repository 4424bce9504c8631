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
from trackstar_dagster.resource import PlainSecretWarning


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
