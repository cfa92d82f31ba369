"""Durations and sizes as settings write them (``'2s'``, ``'100MB'``). Below config and the
migration readers, which both parse them (a file's ``lock_timeout`` directive, ``rewrite_guard``)."""

from __future__ import annotations

import re

from pgshift.errors import ConfigError

# "m" and "d" too: deploy's watch window ("10m") and soak ("7d") are written that way.
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1.0, "s": 1000.0, "min": 60_000.0, "m": 60_000.0, "h": 3_600_000.0, "d": 86_400_000.0, None: 1.0}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?[bB])?\s*$")
_UNITS = {None: 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}


def duration_ms(value: str | int | float, *, key: str = "duration") -> int:
    """``'2s'`` -> 2000. A bare number is milliseconds, as in PostgreSQL."""
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a duration such as '2s' or '500ms', not {value!r}.")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f"{key} must not be negative (got {value}).")
        return int(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ConfigError(
            f"{key} must be a duration such as '2s', '500ms', '10min' or '7d', not {value!r}."
        )
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


def parse_size(value: str | int, *, key: str = "rewrite_guard") -> int:
    """``'100MB'`` -> 104857600 bytes; ``'0'`` (or ``'off'``) turns the guard off."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{key} must be a size such as '100MB' or 0 (off), not {value}.")
        return value
    text = str(value).strip()
    if text.lower() in ("", "off", "false", "no"):
        return 0
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(f"{key} must be a size such as '100MB', '1GB' or '512kB' (0 turns it off), "
                          f"not {value!r}.")
    unit = match.group(2).lower() if match.group(2) else None
    return int(float(match.group(1)) * _UNITS[unit])
