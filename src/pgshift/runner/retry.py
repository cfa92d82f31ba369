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
from psycopg import sql

from pgshift.errors import LockTimeoutExhausted, SerializationExhausted
from pgshift.units import Duration

RETRYABLE = (pgerrors.LockNotAvailable, pgerrors.DeadlockDetected, pgerrors.SerializationFailure)


def retry_reason(exc: psycopg.Error) -> str:
    """What a retried error was, as the progress lines name it."""
    if isinstance(exc, pgerrors.DeadlockDetected):
        return "deadlock"
    if isinstance(exc, pgerrors.SerializationFailure):
        return "serialization failure"
    return "lock timeout"


def gave_up(exc: psycopg.Error, attempts: int, lock_timeout: Duration) -> str:
    """Why a step stopped retrying, as the rest of a sentence about it."""
    reason = retry_reason(exc)
    if reason == "deadlock":
        return f"was chosen to end a deadlock with other sessions in each of {attempts} attempts"
    if reason == "serialization failure":
        return (f"failed to serialize against concurrent transactions in each of {attempts} attempts "
                "(its session's default_transaction_isolation is REPEATABLE READ or SERIALIZABLE)")
    return f"could not take its lock within lock_timeout {lock_timeout} after {attempts} attempts"


def gave_up_error(exc: psycopg.Error) -> type[LockTimeoutExhausted]:
    """The error for a step that stopped retrying after ``exc``: a lock it could not take, or rows it could
    not serialize against (a different cause, with its own exit code)."""
    return SerializationExhausted if retry_reason(exc) == "serialization failure" else LockTimeoutExhausted


def gave_up_hint(exc: psycopg.Error, info: psycopg.ConnectionInfo) -> str:
    """What to do about a step that stopped retrying; ``info``: pgshift's session (its role and database)."""
    if retry_reason(exc) == "serialization failure":
        return ("retry when traffic is lower, or let pgshift's role run at READ COMMITTED in this database (a "
                "role's own setting wins over the database's): "
                + sql.SQL("ALTER ROLE {} IN DATABASE {} SET default_transaction_isolation = 'read committed';").format(
                    sql.Identifier(info.user), sql.Identifier(info.dbname)).as_string(None))
    return "retry when traffic is lower, end the blocking sessions, or raise lock_retries."


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
