"""TrackstarResource: config, client, connection look-up, and no secret in reprs or Dagster's run records."""


from typing import Any

import dagster as dg
import pytest

from trackstar_dagster.client import TrackstarClient, clear_catalog_cache
from trackstar_dagster.errors import ConfigError
from trackstar_dagster.ratelimit import RateLimiters
from trackstar_dagster.resource import ResolvedConnection, TrackstarConnection, TrackstarResource


@pytest.fixture(autouse=True)
def _fresh() -> None:
    RateLimiters.clear()
    clear_catalog_cache()


def resource(sb: Any, **kwargs: Any) -> TrackstarResource:
    kwargs.setdefault(
        "connections",
        [
            TrackstarConnection(name="main", access_token="sandbox-token-wms"),
            TrackstarConnection(name="bob", access_token="sandbox-token-shipbob", integration_name="shipbob"),
        ],
    )
    return TrackstarResource(api_key=sb.api_key, base_url=sb.base_url, timeout=5.0, **kwargs)


def test_client_and_connections(sandbox: Any) -> None:
    res = resource(sandbox)
    client = res.get_client()
    assert isinstance(client, TrackstarClient) and client is res.get_client()
    assert client.base_url == sandbox.base_url and client.timeout == 5.0
    main = res.connection("main")  # integration looked up via GET /connections
    assert main == ResolvedConnection("main", "sandbox-token-wms", "wms", "wms_sandbox")
    assert res.connection("bob").integration_name == "shipbob"  # configured: no look-up
    assert [c.name for c in res.resolved_connections()] == ["main", "bob"]
    with pytest.raises(ConfigError, match="no Trackstar connection named 'nope'"):
        res.connection("nope")
    assert len(client.get_integrations("wms")) == 20


def test_lookup_cached(sandbox: Any) -> None:
    res = resource(sandbox)
    res.connection("main")
    # a second resource in the same process reuses the look-up even though the server is unreachable now
    other = TrackstarResource(api_key=sandbox.api_key, base_url=sandbox.base_url, connections=res.connections)
    sandbox.configure(faults={"drop": 1.0, "applies_to": "all"})
    assert other.connection("main").integration_name == "wms_sandbox"


def test_duplicate_and_empty(sandbox: Any) -> None:
    dup = resource(sandbox, connections=[TrackstarConnection(name="a", access_token="t1", integration_name="x"),
                                         TrackstarConnection(name="a", access_token="t2", integration_name="y")])
    with pytest.raises(ConfigError, match="more than once"):
        dup.resolved_connections()
    with pytest.raises(ConfigError, match="api_key is empty"):
        TrackstarResource(api_key="").get_client()


def test_no_secret_in_repr() -> None:
    res = TrackstarResource(
        api_key="super-secret-key-9",
        connections=[TrackstarConnection(name="c", access_token="super-secret-token-9")],
    )
    conn = ResolvedConnection("c", "super-secret-token-9", "wms", "shipbob")
    for text in (repr(res), str(res), repr(res.connections[0]), repr(conn), str(conn), repr(res.get_client())):
        assert "super-secret" not in text, text


def test_in_a_dagster_run_with_envvar(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKSTAR_API_KEY", sandbox.api_key)
    monkeypatch.setenv("TRACKSTAR_TOKEN_MAIN", "sandbox-token-wms")
    res = TrackstarResource(
        api_key=dg.EnvVar("TRACKSTAR_API_KEY"),
        base_url=sandbox.base_url,
        connections=[TrackstarConnection(name="main", access_token=dg.EnvVar("TRACKSTAR_TOKEN_MAIN"))],
    )

    @dg.asset
    def integration_of_main(context: dg.AssetExecutionContext, trackstar: TrackstarResource) -> str:
        conn = trackstar.connection("main")
        context.add_output_metadata({"connection": str(conn), "resource": repr(trackstar)})
        return conn.integration_name

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([integration_of_main], resources={"trackstar": res}, instance=instance)
    assert result.success
    assert result.output_for_node("integration_of_main") == "wms_sandbox"
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    events = instance.all_logs(result.run_id)
    blob = repr(run.run_config) + repr(run) + "\n".join(repr(e) for e in events)
    for secret in (sandbox.api_key, "sandbox-token-wms"):
        assert secret not in blob
