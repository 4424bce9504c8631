"""The run's collaborators on their own, with a scripted client (no sandbox): results, retries, the
sender's handling of 429s and unknown outcomes, and the reconciler's rule of adopting only tagged records."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from tests.writer import NS
from trackstar_dagster.base.errors import (
    TrackstarRateLimitError,
    TrackstarServerError,
    TrackstarValidationError,
)
from trackstar_dagster.base.keys import key_tag
from trackstar_dagster.writer.actions import spec_for
from trackstar_dagster.writer.lanes import Item, Lane, RetryPolicy
from trackstar_dagster.writer.plan import body_text, decode_body
from trackstar_dagster.writer.reconcile import Reconciler
from trackstar_dagster.writer.results import Results
from trackstar_dagster.writer.send import Sender

LOG = logging.getLogger("tests.writer.collaborators")
FAST = RetryPolicy(max_attempts=3, max_wait_s=1.0, backoff_base=0.001, backoff_max=0.001)
TAG = key_tag("create_order", "k1", NS)


class ScriptedClient:
    """Answers writes and look-ups from scripts: an exception is raised, anything else returned."""

    def __init__(self, writes: list[Any], lookups: list[Any] | None = None) -> None:
        self.writes, self.lookups = list(writes), list(lookups or [])
        self.sent: list[tuple[str, str, str | None]] = []
        self.filters: list[dict[str, str] | None] = []

    async def awrite(
        self, method: str, path: str, body: Any, token: str, *, idempotency_key: str | None = None
    ) -> Any:
        self.sent.append((method, path, idempotency_key))
        answer = self.writes.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def alist_records(
        self, path: str, token: str, *, filters: dict[str, str] | None = None, **_: Any
    ) -> Any:
        self.filters.append(filters)
        answer = self.lookups.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def created(record_id: str = "t-1") -> SimpleNamespace:
    return SimpleNamespace(id=record_id, replayed=False, status_code=201, unused_fields=[], request_id="r-1")


def setup(client: ScriptedClient, *, tagged: bool = True) -> tuple[Results, Lane, Item, Sender]:
    body = {"order_number": "SO-k1", "reference_id": "ref-k1", "trackstar_tags": [TAG] if tagged else []}
    item = Item(
        0,
        "k1",
        "wms",
        "create_order",
        body,
        "h1",
        spec_for("create_order"),
        None,
        "create",
        "send",
        text=body_text(body),
        tag=TAG if tagged else None,
        tags=(TAG,) if tagged else (),
    )
    results = Results(LOG, max_consecutive_5xx=20)
    results.start(1)
    lane = Lane("wms", "token", client=client)
    lane.unfinished = 1
    sender = Sender(
        results, Reconciler(results, FAST, mode="create_only", log=LOG), FAST, tag_namespace=NS, log=LOG
    )
    return results, lane, item, sender


def test_a_429_is_waited_out_and_not_counted_as_an_attempt() -> None:
    client = ScriptedClient(
        [TrackstarRateLimitError("slow down", status=429, retry_after=0.0)] * 2 + [created()]
    )
    results, lane, item, sender = setup(client)
    asyncio.run(sender.send(lane, item))
    row = results.rows[0]
    assert (row["status"], row["attempts"], row["trackstar_id"]) == ("created", 1, "t-1")
    assert len({key for _, _, key in client.sent}) == 1, "every try of a create carries one Idempotency-Key"
    assert [o.status for o in results.outcomes] == ["created"] and lane.unfinished == 0


def test_an_unknown_outcome_is_looked_up_and_the_tagged_record_adopted_without_resending() -> None:
    client = ScriptedClient(
        [TrackstarServerError("bad gateway", status=502)],
        lookups=[[{"id": "t-9", "trackstar_tags": [TAG], "order_number": "SO-k1"}]],
    )
    results, lane, item, sender = setup(client)
    asyncio.run(sender.send(lane, item))
    row = results.rows[0]
    assert (row["status"], row["trackstar_id"], row["reconciled"]) == ("created", "t-9", True)
    assert len(client.sent) == 1
    assert client.filters == [{"trackstar_tags[contains]": TAG}]


def test_a_record_with_our_reference_but_not_our_tag_is_never_adopted() -> None:
    # the server refuses the tag filter: searched by reference_id, proven (or not) by the tag here
    client = ScriptedClient(
        [],
        lookups=[
            TrackstarValidationError("no such filter", status=422),
            [{"id": "t-2", "reference_id": "ref-k1", "trackstar_tags": ["other"]}],
        ],
    )
    results, lane, item, sender = setup(client)
    assert asyncio.run(sender.reconciler.reconcile(lane, item)) is False
    assert client.filters[1] == {"reference_id": "ref-k1"}
    assert results.rows[0] == {} and lane.unfinished == 1  # not finished: it is to be sent


def test_an_untagged_body_cannot_be_proven_and_is_not_looked_up(caplog: pytest.LogCaptureFixture) -> None:
    client = ScriptedClient([])
    results, lane, item, sender = setup(client, tagged=False)
    with caplog.at_level(logging.WARNING):
        assert asyncio.run(sender.reconciler.lookup(lane, item)) is None
        assert asyncio.run(sender.reconciler.lookup(lane, item)) is None
    assert client.filters == []
    assert sum("carry no key tag" in r.message for r in caplog.records) == 1, "warned once per connection"


def test_consecutive_5xx_stop_the_connection_once() -> None:
    results = Results(LOG, max_consecutive_5xx=3)
    lane = Lane("wms", "token", client=ScriptedClient([]))
    err = TrackstarServerError("down", status=503)
    assert [results.server_error(lane, err) for _ in range(4)] == [False, False, True, True]
    assert list(results.stopped) == ["wms"] and "3 consecutive 5xx" in (lane.stop_reason or "")
    other = Lane("other", "token", client=ScriptedClient([]))
    results.server_error(other, err)
    results.server_error(other, TrackstarValidationError("bad", status=422))  # any other answer resets
    assert other.server_errors == 0


def test_backoff_stays_within_its_ceiling() -> None:
    retry = RetryPolicy(backoff_base=0.5, backoff_max=4.0)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        assert all(ceiling / 2 <= retry.backoff(attempt) <= ceiling for _ in range(50))


def test_body_text_is_the_hashed_text_and_decode_refuses_non_json() -> None:
    assert body_text('{"b":1,"a":2}') == '{"b":1,"a":2}'  # a text body is sent as given
    assert body_text({"b": 1, "a": 2}) == '{"a":2,"b":1}'
    with pytest.raises(ValueError):
        decode_body("{not json")
