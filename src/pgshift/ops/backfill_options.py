"""The flags of `pgshift backfill`, raw as typed, turned into the typed job and options.

Errors name the flag, so a library caller passing the same raw values gets the same message.
"""

from __future__ import annotations

from pgshift.config import BackfillSettings
from pgshift.errors import ConfigError
from pgshift.runner.backfill import DEFAULT_LAG_QUERY, BackfillOptions, BackfillSpec
from pgshift.units import duration_ms, parse_size

OFF = "off"


def _at_least_one(value: int, flag: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{flag} must be a whole number of at least 1, not {value!r}.")
    return value


def _duration_or_off(value: str, flag: str) -> int | None:
    return None if str(value).strip().lower() == OFF else duration_ms(value, key=flag)


def _size_or_off(value: str, flag: str) -> int | None:
    text = str(value).strip().lower()
    return None if text in (OFF, "0") else parse_size(value, key=flag) or None


def backfill_options(*, target_ms: int = 75, min_batch: int = 100, max_batch: int = 50_000, batch_size: int = 1_000,
                     pause: str = "0ms", statement_timeout: str = "5s", lock_timeout: str = "1s",
                     max_lock: str = "100ms", max_lag: str | None = None, max_lag_bytes: str | None = None,
                     lag_query: str = DEFAULT_LAG_QUERY, settings: BackfillSettings | None = None) -> BackfillOptions:
    """Options from the flags' raw values: durations as '75ms' / '2s', ``'off'`` for no limit
    (--max-lock, --max-lag, --max-lag-bytes; sizes as '64MB'); --max-lag and --max-lag-bytes default to
    the ``[backfill]`` settings. A --max-batch below --min-batch is raised to it and the first batch
    is kept between the two."""
    defaults = settings or BackfillSettings()
    # Without the flag: the [backfill] settings, where 0 is off.
    max_lag_ms = (defaults.max_lag.ms or None) if max_lag is None else _duration_or_off(max_lag, "--max-lag")
    lag_bytes = ((defaults.max_lag_bytes.bytes or None) if max_lag_bytes is None
                 else _size_or_off(max_lag_bytes, "--max-lag-bytes"))
    min_batch = _at_least_one(min_batch, "--min-batch")
    max_batch = max(_at_least_one(max_batch, "--max-batch"), min_batch)
    return BackfillOptions(
        target_ms=_at_least_one(target_ms, "--target-ms"), min_batch=min_batch, max_batch=max_batch,
        initial_batch=max(min_batch, min(_at_least_one(batch_size, "--batch-size"), max_batch)),
        pause_ms=duration_ms(pause, key="--pause"),
        statement_timeout_ms=duration_ms(statement_timeout, key="--statement-timeout"),
        lock_timeout_ms=duration_ms(lock_timeout, key="--lock-timeout"),
        max_lock_ms=_duration_or_off(max_lock, "--max-lock"),
        max_lag_s=None if max_lag_ms is None else max_lag_ms / 1000, lag_query=lag_query,
        max_lag_bytes=lag_bytes)


def backfill_spec(table: str, set_clause: str, where: str | None = None, key: str | None = None,
                  job: str | None = None) -> BackfillSpec:
    """The job from --table, --set, --where, --key (comma-separated columns) and --job."""
    if not table.strip():
        raise ConfigError("--table must name the table to backfill.")
    if not set_clause.strip():
        raise ConfigError("--set must give the SET list, e.g. \"status = 'PENDING'\".")
    columns = tuple(k.strip() for k in key.split(",")) if key else None
    if columns is not None and not all(columns):
        raise ConfigError(f"--key {key!r} has an empty column name; give comma-separated column names.")
    return BackfillSpec(table, set_clause, where, columns, job)
