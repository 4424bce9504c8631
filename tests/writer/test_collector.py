"""The collector kept out of the way of a write run (``writer/collector.py``), and given back as it was."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import weakref

import pytest

from tests.writer import NS, WMS, WMS_TOKEN, assert_exactly_once, make_client, orders
from trackstar_dagster.sandbox.server import run_sandbox
from trackstar_dagster.writer import write_payloads
from trackstar_dagster.writer.collector import YOUNG_THRESHOLD, quiet_collector
from trackstar_dagster.writer.ledger import Ledger


@pytest.fixture
def default_gc():
    """Python's defaults before and after each test, whatever the test does."""
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)
    gc.unfreeze()


class Seen(logging.Handler):
    """What ``look`` returns at each record the writer logs (in the run's own thread)."""

    def __init__(self, look) -> None:
        super().__init__(logging.DEBUG)
        self.look = look
        self.seen: list = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(RuntimeError):  # a record from a thread without a loop
            self.seen.append(self.look())


def write_watched(tmp_path, n: int, look) -> list:
    """A real run of ``n`` orders against the sandbox, every order once; what ``look`` saw during it."""
    seen = Seen(look)
    log = logging.getLogger("trackstar_dagster.writer")
    level = log.level
    log.addHandler(seen)
    log.setLevel(logging.DEBUG)
    try:
        with run_sandbox(write_rate=1000.0, read_rate=1000.0) as sb, Ledger(tmp_path / "l.sqlite") as ledger:
            payloads = orders(n)
            report = write_payloads(payloads, make_client(sb), {WMS: WMS_TOKEN}, ledger, namespace=NS)
            assert report.counts["created"] == n
            assert_exactly_once(sb, payloads)
    finally:
        log.removeHandler(seen)
        log.setLevel(level)
    assert seen.seen, "the writer logged nothing during the run"
    return seen.seen


def test_a_run_writes_with_the_collector_quieted_and_gives_it_back(default_gc, tmp_path):
    settings = write_watched(tmp_path, 40, lambda: (gc.get_threshold()[0], gc.get_freeze_count()))
    assert all(threshold == YOUNG_THRESHOLD and frozen > 0 for threshold, frozen in settings)
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0


def test_overlapping_runs_share_it_and_the_last_one_restores(default_gc):
    first_in, second_out = threading.Event(), threading.Event()
    during: list[tuple[int, ...]] = []

    def first() -> None:
        with quiet_collector():
            first_in.set()
            second_out.wait(10)
            during.append(gc.get_threshold())  # the other run has ended: still quiet for this one

    t = threading.Thread(target=first)
    t.start()
    assert first_in.wait(10)
    with quiet_collector():
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    second_out.set()
    t.join(10)
    assert during == [(YOUNG_THRESHOLD, 20, 20)]
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0


def test_a_heap_the_process_froze_itself_stays_frozen(default_gc):
    gc.freeze()
    frozen = gc.get_freeze_count()
    with quiet_collector():
        pass
    assert gc.get_freeze_count() == frozen > 0


def test_cyclic_garbage_made_during_a_run_is_still_collected(default_gc):
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: reference counting alone never frees it

    with quiet_collector():
        probe = weakref.ref(Node())
        for _ in range(3 * YOUNG_THRESHOLD):  # allocations enough for the young generation's collections
            Node()
        assert probe() is None
    assert gc.get_threshold() == (700, 10, 10)


def test_switched_off_it_changes_nothing(default_gc):
    with quiet_collector(enabled=False):
        assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0


def test_a_run_writes_on_uvloop_where_it_is_installed(default_gc, tmp_path):
    uvloop = pytest.importorskip("uvloop")
    loops = write_watched(tmp_path, 10, lambda: type(asyncio.get_running_loop()))
    assert set(loops) == {uvloop.Loop}
