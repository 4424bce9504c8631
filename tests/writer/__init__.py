"""Helpers for the writer tests: payload frames built like the rows layer builds them, and sandbox checks."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import pandas as pd

from trackstar_dagster.base.keys import has_tag, key_tag
from trackstar_dagster.client import TrackstarClient

WMS = "wms"  # connection name used in the tests
WMS_TOKEN = "sandbox-token-wms"
NS = "orders_sync"  # the sync (tag namespace) the tests write as
#: every sandbox fault off (``configure(faults=CLEAR)`` after a test that injected some)
CLEAR = {
    "error_5xx": 0.0,
    "burst_429": 0,
    "share_429": 0.0,
    "hang": 0.0,
    "drop": 0.0,
    "commit_then_fail": 0.0,
    "ignore_idempotency_key": False,
}


def order_body(
    connection: str, key: str, *, reference: bool = True, ns: str | None = NS, **extra: Any
) -> dict[str, Any]:
    """A valid wms_sandbox create_order body carrying the key tag of sync ``ns``."""
    body: dict[str, Any] = {
        "order_number": f"SO-{key}",
        "ship_to_address": {
            "full_name": "Ada Lovelace",
            "address1": "1 Analytical Way",
            "city": "London",
            "state": "LDN",
            "postal_code": "N1 9GU",
            "country": "GB",
        },
        "line_items": [{"product_id": "prod-1", "quantity": 2}],
        "trackstar_tags": [key_tag("create_order", key, ns)],
    }
    if reference:
        body["reference_id"] = f"ref-{key}"
    body.update(extra)
    return body


def frame(rows: list[tuple[str, str, str, dict[str, Any]]]) -> pd.DataFrame:
    """(key, connection, action, body) -> a payloads frame with JSON text bodies, their hash and tag."""
    out = []
    for key, connection, action, body in rows:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        tags = [t for t in body.get("trackstar_tags", []) if isinstance(t, str) and t.startswith("tsd:")]
        out.append(
            {
                "key": key,
                "connection": connection,
                "action": action,
                "body": text,
                "body_hash": hashlib.sha256(text.encode()).hexdigest(),
                "tag": tags[0] if tags else None,
                "source_rows": [0],
            }
        )
    return pd.DataFrame(
        out, columns=["key", "connection", "action", "body", "body_hash", "tag", "source_rows"]
    )


def orders(n: int, connection: str = WMS, prefix: str = "o", **extra: Any) -> pd.DataFrame:
    return frame(
        [
            (f"{prefix}{i}", connection, "create_order", order_body(connection, f"{prefix}{i}", **extra))
            for i in range(n)
        ]
    )


def make_client(sb: Any, *, timeout: float = 1.0, rate: float = 500.0) -> TrackstarClient:
    """Short timeouts and generous client-side limits (the tests' sandboxes are started with the same)."""
    return TrackstarClient(
        sb.api_key,
        sb.base_url,
        timeout=timeout,
        connect_timeout=timeout,
        max_retries=3,
        backoff_base=0.05,
        backoff_max=0.5,
        read_rate=rate,
        write_rate=rate,
        max_wait=5.0,
    )


def tag_counts(sb: Any, payloads: pd.DataFrame, resource: str = "orders", token: str = WMS_TOKEN) -> Counter:
    """How many stored records carry each payload's key tag (exactly once means all 1)."""
    records = sb.records(resource, token=token)
    counts: Counter = Counter()
    for key, tag in zip(payloads["key"], payloads["tag"], strict=True):
        counts[key] = sum(1 for r in records if has_tag(r, tag))
    return counts


def assert_exactly_once(
    sb: Any, payloads: pd.DataFrame, resource: str = "orders", token: str = WMS_TOKEN
) -> None:
    counts = tag_counts(sb, payloads, resource, token)
    wrong = {k: c for k, c in counts.items() if c != 1}
    assert not wrong, f"records not stored exactly once: {dict(list(wrong.items())[:10])}"
    assert len(sb.records(resource, token=token)) == len(payloads)


class CountingClient:
    """Wraps a client and counts the writes it sends (to prove a re-run sends nothing)."""

    def __init__(self, client: TrackstarClient) -> None:
        self.client = client
        self.writes = 0
        self.reads = 0

    async def awrite(self, *args: Any, **kwargs: Any) -> Any:
        self.writes += 1
        return await self.client.awrite(*args, **kwargs)

    async def alist_records(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return await self.client.alist_records(*args, **kwargs)

    async def aclose(self) -> None:
        await self.client.aclose()
