"""The pools' settings: how often a step beats, when a holder counts as dead, whether a local pid may tell sooner.

Read from the environment (``TRACKSTAR_POOL_HEARTBEAT_S``, ``TRACKSTAR_POOL_STALE_S``, ``TRACKSTAR_POOL_CHECK_PID``),
each overridable by a caller (the CLI's ``--stale-seconds``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from trackstar_dagster.base.redaction import redacted_logger

ENV_HEARTBEAT_S = "TRACKSTAR_POOL_HEARTBEAT_S"
ENV_STALE_S = "TRACKSTAR_POOL_STALE_S"
ENV_CHECK_PID = "TRACKSTAR_POOL_CHECK_PID"
DEFAULT_HEARTBEAT_S = 15.0
DEFAULT_STALE_S = 90.0

_log = redacted_logger(__name__)


@dataclass(frozen=True)
class PoolSettings:
    """How often a running step beats, when a holder counts as dead, and whether a local pid may tell sooner."""

    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    stale_s: float = DEFAULT_STALE_S
    check_pid: bool = True

    @classmethod
    def from_env(cls, **overrides: Any) -> PoolSettings:
        settings = cls(
            heartbeat_s=_env_float(ENV_HEARTBEAT_S, DEFAULT_HEARTBEAT_S),
            stale_s=_env_float(ENV_STALE_S, DEFAULT_STALE_S),
            check_pid=os.environ.get(ENV_CHECK_PID, "1").strip().lower() not in {"0", "false", "no", "off"},
        )
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def poll_s(self) -> float:
        """How often a step waiting for the pool looks again."""
        return max(0.1, min(self.heartbeat_s, 5.0))


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        _log.warning(f"{name}={raw!r} is not a number; using {default}")
        return default
    return value if value > 0 else default
