"""Latency and fault injection, so clients can be tested against the failures a real WMS round trip has.

Every decision comes from one ``random.Random(seed)``: with a seed, a run of requests gets the same faults
in the same order (as long as requests arrive in the same order).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AppliesTo = Literal["writes", "reads", "all"]
FaultKind = Literal["429", "5xx", "hang", "drop", "commit_then_fail"]


class FaultConfig(BaseModel):
    """What the sandbox does to data requests (``/wms/...``). Shares are probabilities in [0, 1].

    ``latency`` + uniform(0, ``jitter``) seconds are slept on every data request (reads and writes);
    the other faults hit only the requests selected by ``applies_to`` (writes by default).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    latency: float = Field(default=0.0, ge=0, description="fixed delay in seconds on every data request")
    jitter: float = Field(default=0.0, ge=0, description="extra uniform(0, jitter) seconds")
    error_5xx: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share answered 500/502/503, nothing stored",
    )
    burst_429: int = Field(default=0, ge=0, description="the next N requests answer 429")
    share_429: float = Field(default=0.0, ge=0, le=1, description="share answered 429")
    retry_after_s: int = Field(default=1, ge=0, description="retry-after sent with injected 429s")
    hang: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share that sleeps hang_s then answers 504, nothing stored",
    )
    hang_s: float = Field(
        default=30.0,
        ge=0,
        description="how long a hang lasts (make it longer than the client timeout)",
    )
    drop: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share whose TCP connection is closed without an answer",
    )
    commit_then_fail: float = Field(default=0.0, ge=0, le=1, description="share stored, then answered 502")
    applies_to: AppliesTo = "writes"
    seed: int | None = None
    ignore_idempotency_key: bool = Field(
        default=False,
        description="act as a server that does not honour Idempotency-Key (or whose 24 h window passed): "
        "every write is performed, none replayed",
    )


@dataclass
class FaultDecision:
    """One request's fate: ``kind`` None means "behave"."""

    kind: FaultKind | None = None
    status: int = 0


class FaultInjector:
    """Holds the live ``FaultConfig`` and draws decisions. Used from the event loop thread only."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.config = config or FaultConfig()
        self._rng = random.Random(self.config.seed)
        self._burst_left = self.config.burst_429

    def configure(self, config: FaultConfig | dict | None = None, **changes: object) -> FaultConfig:
        """Replace the config (a FaultConfig or dict, which re-arms the burst and rng), or update some fields
        (only a new ``burst_429`` re-arms the burst, only a new ``seed`` restarts the rng)."""
        given = {k: v for k, v in changes.items() if v is not None}
        if config is None:
            base = self.config.model_dump()
        elif isinstance(config, FaultConfig):
            base = config.model_dump()
        else:
            base = FaultConfig(**config).model_dump()
        base.update(given)
        self.config = FaultConfig(**base)
        if config is not None or "seed" in given:
            self._rng = random.Random(self.config.seed)
        if config is not None or "burst_429" in given:
            self._burst_left = self.config.burst_429
        return self.config

    def delay(self) -> float:
        """Seconds to sleep before answering a data request."""
        c = self.config
        if c.jitter > 0:
            return c.latency + self._rng.uniform(0, c.jitter)
        return c.latency

    def applies(self, is_write: bool) -> bool:
        to = self.config.applies_to
        return to == "all" or (to == "writes") == is_write

    def decide(self, is_write: bool) -> FaultDecision:
        """Draw the fault for one request (one rng draw, shares are stacked in a fixed order)."""
        if not self.applies(is_write):
            return FaultDecision()
        c = self.config
        if self._burst_left > 0:
            self._burst_left -= 1
            return FaultDecision("429", 429)
        shares: list[tuple[FaultKind, float]] = [
            ("429", c.share_429),
            ("drop", c.drop),
            ("hang", c.hang),
            ("5xx", c.error_5xx),
        ]
        if is_write:
            shares.append(("commit_then_fail", c.commit_then_fail))
        if not any(s for _, s in shares):
            return FaultDecision()
        r = self._rng.random()
        acc = 0.0
        for kind, share in shares:
            acc += share
            if r < acc:
                status = {"429": 429, "drop": 0, "hang": 504, "commit_then_fail": 502}.get(kind)
                if kind == "5xx":
                    status = self._rng.choice((500, 502, 503))
                return FaultDecision(kind, status or 0)
        return FaultDecision()
