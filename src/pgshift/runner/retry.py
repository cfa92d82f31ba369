"""Exponential backoff with jitter for statements that hit lock_timeout (SQLSTATE 55P03)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # retries after the first try
    initial_ms: int = 200
    max_ms: int = 10_000

    def delay_seconds(self, retry: int, rng: random.Random | None = None) -> float:
        """Delay before retry number ``retry`` (1-based): half fixed, half random ("equal jitter")."""
        capped = float(min(self.max_ms, self.initial_ms * 2 ** (retry - 1)))
        jitter = float((rng or random).uniform(0, capped / 2))
        return (capped / 2 + jitter) / 1000
