"""``write_payloads``: the sync entry point, which runs ``awrite_payloads`` on an event loop in a thread of
its own and turns an interrupt in the caller's thread into a clean cancel of the run.

Why a thread even when the caller runs no loop: an interrupt (Dagster raises one in the run worker's main
thread on SIGTERM or a cancelled run; Ctrl-C) must not land inside the event loop's machinery, where it can
leave a future unresolved and the run hung. It lands in the caller's thread instead, which cancels the run's
task on its loop, waits (bounded) for it to close and re-raises.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..base.redaction import redacted_logger
from .lanes import WriterClient
from .ledger import Ledger
from .report import WriteReport
from .run import awrite_payloads

log = redacted_logger("trackstar_dagster.writer")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The writer's event loop: uvloop's where it is installed (a dependency except on Windows), asyncio's
    otherwise. Why: a run's CPU is mostly the loop's own work per request (timers, callbacks, socket reads);
    uvloop's, in C, took 5-10% less of the writer's CPU per write at 8 tokens x 50 writes/s."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def write_payloads(
    payloads: pd.DataFrame,
    client: WriterClient | Mapping[str, WriterClient],
    tokens: Mapping[str, str],
    ledger: Ledger,
    *,
    close_timeout_s: float = 60.0,
    **options: Any,
) -> WriteReport:
    """Sync wrapper of ``awrite_payloads``: runs its event loop in a thread of its own and waits for it.

    Why a thread even when the caller runs no loop: an interrupt (Dagster raises one in the run worker's main
    thread on SIGTERM or a cancelled run; Ctrl-C) must not land inside the event loop's machinery, where it
    can leave a future unresolved and the run hung. It lands here instead; the run is then cancelled
    cleanly (every outcome into the ledger, claims given back; at most ``close_timeout_s``) and the
    interrupt re-raised.
    """
    box: dict[str, Any] = {}
    ready = threading.Event()

    async def main() -> WriteReport:
        box["loop"], box["task"] = asyncio.get_running_loop(), asyncio.current_task()
        ready.set()
        try:
            return await awrite_payloads(payloads, client, tokens, ledger, **options)
        finally:
            # the client's async httpx pool belongs to this loop, which ends here
            for c in client.values() if isinstance(client, Mapping) else [client]:
                aclose = getattr(c, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await aclose()

    done: concurrent.futures.Future[WriteReport] = concurrent.futures.Future()

    def run_loop() -> None:
        try:
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                done.set_result(runner.run(main()))
        except BaseException as e:  # handed to the caller's thread
            done.set_exception(e)
        finally:
            ready.set()

    threading.Thread(target=run_loop, name="trackstar-writer", daemon=True).start()
    try:
        return done.result()
    except BaseException:
        if not done.done():
            ready.wait(close_timeout_s)
            loop, task = box.get("loop"), box.get("task")
            if loop is not None and task is not None:
                with contextlib.suppress(RuntimeError):  # the loop may have just ended
                    loop.call_soon_threadsafe(task.cancel)
            deadline = time.monotonic() + close_timeout_s
            while not done.done() and time.monotonic() < deadline:
                with contextlib.suppress(BaseException):  # a second interrupt: keep closing, within the bound
                    concurrent.futures.wait([done], timeout=max(0.0, deadline - time.monotonic()))
            if not done.done():
                log.error(
                    "Trackstar writer: the run did not close within %.0f s of the interrupt; records in "
                    "flight stay intents and are looked up by the next run",
                    close_timeout_s,
                )
        raise
