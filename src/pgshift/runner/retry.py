"""The one retry policy: bounded exponential backoff with equal jitter for a lock timeout (SQLSTATE
55P03), a deadlock (40P01) or a serialization failure (40001, under a database's or role's default
of REPEATABLE READ or SERIALIZABLE). Each leaves nothing behind (the transaction, or the one
statement, was rolled back), so the same attempt is simply made again. Every retry loop of pgshift (the step
engine's steps, the backfill's batches) goes through :meth:`RetryPolicy.run`."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from psycopg import errors as pgerrors

RETRYABLE = (pgerrors.LockNotAvailable, pgerrors.DeadlockDetected, pgerrors.SerializationFailure)


def retry_reason(exc: psycopg.Error) -> str:
    """What a retried error was, as the progress lines name it."""
    if isinstance(exc, pgerrors.DeadlockDetected):
        return "deadlock"
    if isinstance(exc, pgerrors.SerializationFailure):
        return "serialization failure"
    return "lock timeout"
T = TypeVar("T")


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

    def run(self, attempt: Callable[[], T], *, on_retry: Callable[[int, float, psycopg.Error], None],
            exhausted: Callable[[int, psycopg.Error], BaseException],
            hold_off: Callable[[int, float, bool], bool] | None = None,
            sleep: Callable[[float], None] = time.sleep) -> T:
        """``attempt()`` until it does not fail with a lock timeout or deadlock, at most attempts + 1 times.

        ``hold_off(number, delay, final)`` runs before each attempt; True spends that attempt waiting
        ``delay`` instead (never on the final one). ``on_retry(number, delay, error)`` reports a retry
        before its sleep; ``exhausted(attempts, error)`` is what is raised after the last."""
        for number in range(1, self.attempts + 2):
            final = number > self.attempts
            if hold_off is not None:
                delay = self.delay_seconds(number)
                if hold_off(number, delay, final) and not final:
                    sleep(delay)
                    continue
            try:
                return attempt()
            except RETRYABLE as exc:
                if final:
                    raise exhausted(number, exc) from exc
                delay = self.delay_seconds(number)
                on_retry(number, delay, exc)
                sleep(delay)
        raise AssertionError("unreachable")
