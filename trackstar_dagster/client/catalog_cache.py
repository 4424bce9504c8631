"""The process-wide cache of catalog answers (Trackstar allows the catalog 1 call/min per API key).

Why a module of its own: the cache outlives any one client (several clients with the same key share it)
and tests clear it between runs; it is keyed by (base URL, API key fingerprint, path), never the key.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

from trackstar_dagster.base.errors import (
    TrackstarRateLimitError,
    TrackstarServerError,
    TrackstarTransportError,
)
from trackstar_dagster.base.redaction import redacted_logger

logger = redacted_logger("trackstar_dagster.client")

__all__ = ["CatalogCache", "clear_catalog_cache"]


class CatalogCache:
    """Process-wide cache of catalog answers keyed by (base URL, API key fingerprint, path)."""

    lock = threading.Lock()
    entries: dict[tuple[str, str, str], tuple[float, Any]] = {}
    sync_locks: dict[tuple[str, str, str], threading.Lock] = {}

    @classmethod
    def fresh(cls, key: tuple[str, str, str], interval: float) -> tuple[bool, Any]:
        with cls.lock:
            entry = cls.entries.get(key)
        if entry is not None and time.monotonic() - entry[0] < interval:
            return True, copy.deepcopy(entry[1])
        return False, None

    @classmethod
    def stale(cls, key: tuple[str, str, str]) -> tuple[bool, Any]:
        with cls.lock:
            entry = cls.entries.get(key)
        return (True, copy.deepcopy(entry[1])) if entry is not None else (False, None)

    @classmethod
    def store(cls, key: tuple[str, str, str], value: Any) -> None:
        with cls.lock:
            cls.entries[key] = (time.monotonic(), copy.deepcopy(value))

    @classmethod
    def sync_lock(cls, key: tuple[str, str, str]) -> threading.Lock:
        with cls.lock:
            return cls.sync_locks.setdefault(key, threading.Lock())

    @classmethod
    def read(
        cls, key: tuple[str, str, str], interval: float, fetch: Callable[[bool], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """A fresh copy, else ``fetch(has_stale)`` once per key at a time; when the fetch is rate limited or
        the server fails and an older copy exists, the older copy (a 1/min limit is not worth waiting out)."""
        hit, value = cls.fresh(key, interval)
        if hit:
            return value
        with cls.sync_lock(key):
            hit, value = cls.fresh(key, interval)
            if hit:
                return value
            has_stale, stale = cls.stale(key)
            try:
                data = fetch(has_stale)
            except (TrackstarRateLimitError, TrackstarServerError, TrackstarTransportError) as exc:
                if has_stale:
                    logger.warning(
                        "catalog %s: %s; answering from an older cached copy", key[2], type(exc).__name__
                    )
                    return stale
                raise
            cls.store(key, data)
            return copy.deepcopy(data)

    @classmethod
    def clear(cls) -> None:
        with cls.lock:
            cls.entries.clear()


def clear_catalog_cache() -> None:
    """Forget every cached catalog answer in this process (tests, or after a schema change)."""
    CatalogCache.clear()
