"""TrackstarResource: config, client, connection look-up, and no secret in reprs or Dagster's run records."""

import logging
import warnings
from collections.abc import Iterator
from typing import Any

import dagster as dg
import httpx
import pytest

from trackstar_dagster import resource as resource_module
from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.client import TrackstarClient, clear_catalog_cache
from trackstar_dagster.client.ratelimit import RateLimiters
from trackstar_dagster.resource import (
    PlainSecretWarning,
    ResolvedConnection,
    TrackstarConnection,
    TrackstarResource,
)

# the tests below build resources from plain test tokens on purpose
pytestmark = pytest.mark.filterwarnings("ignore::trackstar_dagster.resource.PlainSecretWarning")

DSN_PASSWORD = "pw-Zq81-never-shown"
DSN = f"postgresql+psycopg://ledger_user:{DSN_PASSWORD}@db.internal:5432/trackstar"


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    RateLimiters.clear()
    clear_catalog_cache()
    resource_module._LOOKUPS.clear()
    resource_module._PLAIN_SECRETS_WARNED.clear()
    yield
    resource_module._PLAIN_SECRETS_WARNED.clear()


def connection_id(sb: Any, token: str) -> str:
    """The sandbox's connection id of a token (what the Trackstar dashboard shows)."""
    return sb.sandbox.connections[token].connection_id


def resource(sb: Any, **kwargs: Any) -> TrackstarResource:
    kwargs.setdefault(
        "connections",
        [
            TrackstarConnection(
                name="main",
                access_token="sandbox-token-wms",
                connection_id=connection_id(sb, "sandbox-token-wms"),
            ),
            TrackstarConnection(name="bob", access_token="sandbox-token-shipbob", integration_name="shipbob"),
        ],
    )
    return TrackstarResource(api_key=sb.api_key, base_url=sb.base_url, timeout=5.0, **kwargs)


def test_client_and_connections(sandbox: Any) -> None:
    res = resource(sandbox)
    client = res.get_client()
    assert isinstance(client, TrackstarClient) and client is res.get_client()
    assert client.base_url == sandbox.base_url and client.timeout == 5.0
    main = res.connection("main")  # integration looked up via GET /connections/{connection_id}
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
    dup = resource(
        sandbox,
        connections=[
            TrackstarConnection(name="a", access_token="t1", integration_name="x"),
            TrackstarConnection(name="a", access_token="t2", integration_name="y"),
        ],
    )
    with pytest.raises(ConfigError, match="more than once"):
        dup.resolved_connections()
    with pytest.raises(ConfigError, match="api_key is empty"):
        TrackstarResource(api_key="").get_client()


def test_no_secret_in_repr() -> None:
    res = TrackstarResource(
        api_key="super-secret-key-9",
        connections=[
            TrackstarConnection(name="c", access_token="super-secret-token-9", integration_name="x")
        ],
    )
    conn = ResolvedConnection("c", "super-secret-token-9", "wms", "shipbob")
    for text in (
        repr(res),
        str(res),
        repr(res.connections[0]),
        repr(conn),
        str(conn),
        repr(res.get_client()),
    ):
        assert "super-secret" not in text, text


def test_in_a_dagster_run_with_envvar(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKSTAR_API_KEY", sandbox.api_key)
    monkeypatch.setenv("TRACKSTAR_TOKEN_MAIN", "sandbox-token-wms")
    res = TrackstarResource(
        api_key=dg.EnvVar("TRACKSTAR_API_KEY"),
        base_url=sandbox.base_url,
        connections=[
            TrackstarConnection(
                name="main",
                access_token=dg.EnvVar("TRACKSTAR_TOKEN_MAIN"),
                connection_id=connection_id(sandbox, "sandbox-token-wms"),
            )
        ],
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


# -- how a connection's integration is known (finding: token in a URL) ---------------------------------------


def test_the_resource_owns_its_client_and_a_token_needs_no_lookup(sandbox: Any, tmp_path: Any) -> None:
    from trackstar_dagster.mapping import MappingConfig
    from trackstar_dagster.sync import resolve_targets

    res = resource(sandbox, state_dir=str(tmp_path))
    seen: list[httpx.Request] = []
    client = res.get_client()
    client.http.event_hooks["request"].append(seen.append)
    # the write step reads tokens only: no look-up of the connection_id connection's integration
    assert res.access_token("main") == "sandbox-token-wms" and seen == []
    # the payloads step resolves the connection once and fetches its write-info with the shared client,
    # which it leaves open for the next caller
    mapping = MappingConfig.model_validate(
        {"action": "create_order", "key": "k", "connection": "main", "fields": {"order_number": "k"}}
    )
    targets = resolve_targets(res, mapping)
    assert targets["main"].integration_name == "wms_sandbox"
    assert res.get_client() is client and not client.http.is_closed
    assert [r.url.path for r in seen][0] == f"/connections/{connection_id(sandbox, 'sandbox-token-wms')}"
    res.close()  # what teardown_after_execution does at the end of a run
    assert res.get_client() is not client


def httpx_urls(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "httpx"]


def test_connection_without_integration_or_id_is_a_config_error_at_definition() -> None:
    with pytest.raises(ConfigError) as exc:
        TrackstarResource(
            api_key=dg.EnvVar("TRACKSTAR_API_KEY"),
            connections=[
                TrackstarConnection(name="fine", access_token=dg.EnvVar("T1"), integration_name="shipbob"),
                TrackstarConnection(name="acme", access_token=dg.EnvVar("ACME_TOKEN")),
            ],
        )
    text = str(exc.value)
    assert "'acme'" in text and "'fine'" not in text
    assert "integration_name" in text and "connection_id" in text  # the two ways to fix it
    assert "lookup_integration_by_token" in text


def test_connection_id_is_looked_up_without_the_token(sandbox: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    seen: list[httpx.Request] = []
    res = resource(sandbox)
    res.get_client().http.event_hooks["request"].append(seen.append)
    assert res.connection("main").integration_name == "wms_sandbox"
    assert [r.url.path for r in seen] == [f"/connections/{connection_id(sandbox, 'sandbox-token-wms')}"]
    assert not seen[0].url.query and "x-trackstar-access-token" not in seen[0].headers
    assert not any("access_token" in line for line in httpx_urls(caplog))
    # cached per process: a second resource makes no call
    seen.clear()
    assert resource(sandbox).connection("main").integration_name == "wms_sandbox"


def test_token_lookup_only_as_an_opt_in_that_warns(sandbox: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    res = resource(
        sandbox,
        lookup_integration_by_token=True,
        connections=[TrackstarConnection(name="main", access_token="sandbox-token-wms")],
    )
    assert res.connection("main").integration_name == "wms_sandbox"
    warned = [
        r for r in caplog.records if r.name == "trackstar_dagster.resource" and r.levelno == logging.WARNING
    ]
    assert len(warned) == 1
    message = warned[0].getMessage()
    assert "'main'" in message and "access log" in message and "integration_name" in message
    assert "connection_id" in message
    assert any("/connections?access_token=***" in line for line in httpx_urls(caplog))
    for record in caplog.records:
        assert "sandbox-token-wms" not in record.getMessage()


def test_unresolvable_connection_given_at_launch_fails_before_any_call(sandbox: Any) -> None:
    """Config given at launch (not at definition): the resource fails when the run initializes it."""

    @dg.asset
    def uses(trackstar: TrackstarResource) -> str:
        return trackstar.connection("acme").integration_name

    result = dg.materialize(
        [uses],
        resources={"trackstar": TrackstarResource.configure_at_launch()},
        run_config={
            "resources": {
                "trackstar": {
                    "config": {
                        "api_key": sandbox.api_key,
                        "base_url": sandbox.base_url,
                        "connections": [{"name": "acme", "access_token": "sandbox-token-wms"}],
                    }
                }
            }
        },
        raise_on_error=False,
    )
    assert not result.success
    failure = next(
        e for e in result.all_events if e.event_type_value in ("RESOURCE_INIT_FAILURE", "STEP_FAILURE")
    )
    assert "acme" in str(failure.event_specific_data.error) and "connection_id" in str(
        failure.event_specific_data.error
    )
    assert all(c.times_used == 0 for c in sandbox.sandbox.connections.values())
    assert "sandbox-token-wms" not in str(failure.event_specific_data.error)


def test_connection_checked_again_before_the_first_call() -> None:
    """Even a resource that skipped validation never sends a token in a query string."""
    res = TrackstarResource(
        api_key="k-123456",
        base_url="http://127.0.0.1:9",
        connections=[TrackstarConnection(name="c", access_token="t-123456", integration_name="x")],
    )
    object.__setattr__(res.connections[0], "integration_name", None)
    with pytest.raises(ConfigError, match="'c'.*integration_name.*connection_id"):
        res.connection("c")


# -- DSN passwords (finding: repr shows the ledger password) ---------------------------------------------


def test_ledger_dsn_password_never_shown() -> None:
    res = TrackstarResource(api_key=dg.EnvVar("TRACKSTAR_API_KEY"), ledger_url=DSN)
    texts = [repr(res), str(res), f"{res!r}", f"{res}", repr([res]), repr({"trackstar": res})]
    for text in texts:
        assert DSN_PASSWORD not in text, text
    assert "ledger_user:***@db.internal:5432/trackstar" in repr(res)
    assert res.ledger_url == DSN  # the value itself is intact: only its displays are masked
    # an EnvVar stays shown as the variable's name
    res_env = TrackstarResource(api_key=dg.EnvVar("TRACKSTAR_API_KEY"), ledger_url=dg.EnvVar("LEDGER_URL"))
    assert "LEDGER_URL" in repr(res_env)


def test_ledger_dsn_password_out_of_our_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    logging.getLogger("trackstar_dagster.writer").warning("ledger at %s is not answering", DSN)
    assert caplog.records and all(DSN_PASSWORD not in r.getMessage() for r in caplog.records)


# -- plain-string secrets in definitions (finding: secrets land in run storage silently) ------------------


def plain_secret_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, PlainSecretWarning)]


def build_defs(res: TrackstarResource) -> dg.Definitions:
    @dg.asset
    def noop(trackstar: TrackstarResource) -> int:
        return len(trackstar.connections)

    defs = dg.Definitions(assets=[noop], resources={"trackstar": res})
    defs.get_repository_def()
    return defs


def test_plain_string_secrets_warn_once_per_field_without_the_value() -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        build_defs(
            TrackstarResource(
                api_key="plain-key-0000",
                ledger_url=DSN,
                connections=[
                    TrackstarConnection(
                        name="acme", access_token="plain-token-1111", integration_name="shipbob"
                    ),
                    TrackstarConnection(
                        name="globex", access_token=dg.EnvVar("GLOBEX_TOKEN"), integration_name="x"
                    ),
                ],
            )
        )
        # the same fields again: no second warning
        build_defs(
            TrackstarResource(
                api_key="plain-key-0000",
                connections=[
                    TrackstarConnection(name="acme", access_token="plain-token-1111", integration_name="y")
                ],
            )
        )
    found = plain_secret_warnings(record)
    assert len(found) == 3, found
    joined = "\n".join(found)
    assert "TrackstarResource.api_key" in joined and "EnvVar" in joined
    assert "connection 'acme'" in joined and "access_token" in joined and "globex" not in joined
    assert "ledger_url" in joined
    for secret in ("plain-key-0000", "plain-token-1111", DSN_PASSWORD):
        assert secret not in joined


def test_envvar_secrets_do_not_warn_at_definition_or_at_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("TRACKSTAR_API_KEY", "key-from-env")
    monkeypatch.setenv("ACME_TOKEN", "token-from-env")
    monkeypatch.setenv("LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    res = TrackstarResource(
        api_key=dg.EnvVar("TRACKSTAR_API_KEY"),
        ledger_url=dg.EnvVar("LEDGER_URL"),
        connections=[
            TrackstarConnection(name="acme", access_token=dg.EnvVar("ACME_TOKEN"), integration_name="x")
        ],
    )
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        defs = build_defs(res)
        # at run time Dagster builds the resource again from the resolved (plain) values: still no warning
        result = defs.get_implicit_global_asset_job_def().execute_in_process()
        assert result.success
    assert plain_secret_warnings(record) == []
    # a ledger URL without a password is not a secret
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        build_defs(
            TrackstarResource(
                api_key=dg.EnvVar("TRACKSTAR_API_KEY"), ledger_url=f"sqlite:///{tmp_path / 'other.sqlite'}"
            )
        )
    assert plain_secret_warnings(record) == []
