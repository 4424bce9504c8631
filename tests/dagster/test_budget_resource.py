"""The resource's client takes its budgets from the resource's ledger (``shared_budgets``), in a real Dagster run:
what a run sends on a token is on the token's schedule in the ledger's database, under its fingerprint only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from trackstar_dagster.base.redaction import fingerprint
from trackstar_dagster.client.ratelimit import RateLimiters
from trackstar_dagster.client.shared_budget import SharedLimiters
from trackstar_dagster.resource import TrackstarConnection, TrackstarResource

pytestmark = pytest.mark.filterwarnings("ignore::trackstar_dagster.resource.PlainSecretWarning")

TOKEN = "sandbox-token-wms"


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    RateLimiters.clear()
    SharedLimiters.clear()
    yield
    SharedLimiters.clear()


def run_once(instance: dg.DagsterInstance, sb: Any, state_dir: Path, **kwargs: Any) -> None:
    @dg.asset
    def orders(trackstar: TrackstarResource) -> None:
        client = trackstar.get_client()
        for n in range(3):
            body = {
                "order_number": f"SO-{n}",
                "ship_to_address": {
                    "address1": "1 Main St",
                    "city": "Austin",
                    "state": "TX",
                    "postal_code": "78701",
                    "country": "US",
                },
                "line_items": [{"product_id": "prod-1", "quantity": 1}],
            }
            client.write("POST", "/wms/orders", body, TOKEN)
        client.list_records("/wms/orders", TOKEN)

    resource = TrackstarResource(
        api_key=sb.api_key,
        base_url=sb.base_url,
        state_dir=str(state_dir),
        connections=[TrackstarConnection(name="main", access_token=TOKEN, integration_name="sandbox")],
        **kwargs,
    )
    assert dg.materialize([orders], resources={"trackstar": resource}, instance=instance).success


def schedules(state_dir: Path) -> list[tuple[str, str]]:
    engine = sa.create_engine(f"sqlite:///{state_dir / 'ledger.sqlite'}")
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("trackstar_budgets"):
                return []
            return [tuple(r) for r in conn.execute(sa.text("SELECT token, kind FROM trackstar_budgets"))]
    finally:
        engine.dispose()


def test_a_run_takes_its_budget_from_the_ledger(
    instance: dg.DagsterInstance, sandbox: Any, tmp_path: Path
) -> None:
    run_once(instance, sandbox, tmp_path)
    rows = schedules(tmp_path)
    assert sorted(kind for _, kind in rows) == ["read", "write"]
    assert all(token.startswith(fingerprint(TOKEN) + "@") for token, _ in rows)
    for f in tmp_path.glob("ledger.sqlite*"):  # the token itself is nowhere in the database's files
        assert TOKEN.encode() not in f.read_bytes()
    assert len(sandbox.records("orders", TOKEN)) == 3


def test_shared_budgets_off_keeps_the_rates_per_process(
    instance: dg.DagsterInstance, sandbox: Any, tmp_path: Path
) -> None:
    run_once(instance, sandbox, tmp_path, shared_budgets=False)
    assert schedules(tmp_path) == []
    assert len(sandbox.records("orders", TOKEN)) == 3
