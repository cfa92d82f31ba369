"""Durations and sizes as settings write them (``'2s'``, ``'100MB'``). Below config and the
migration readers, which both parse them (a file's ``lock_timeout`` directive, ``rewrite_guard``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

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


_PG_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000))


@dataclass(frozen=True)
class Duration:
    """A duration setting, parsed once: its milliseconds, and the text it was written as (``'2s'``),
    which messages and reports keep showing. Equal when the milliseconds are."""

    ms: int
    text: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.text:
            object.__setattr__(self, "text", self.postgres)

    @classmethod
    def parse(cls, value: str | int | float, *, key: str = "duration") -> Duration:
        return cls(duration_ms(value, key=key), str(value))

    @property
    def seconds(self) -> float:
        return self.ms / 1000

    @property
    def delta(self) -> timedelta:
        return timedelta(milliseconds=self.ms)

    @property
    def postgres(self) -> str:
        """The value as PostgreSQL's duration settings take it (``SET lock_timeout``): the largest unit
        that is exact. Not ``text``: PostgreSQL knows neither ``m`` nor ``7.5d``."""
        if self.ms == 0:
            return "0"
        for unit, size in _PG_UNITS:
            if self.ms % size == 0:
                return f"{self.ms // size}{unit}"
        return f"{self.ms}ms"

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Size:
    """A size setting (``'64MB'``), parsed once into bytes; 0 is off. Keeps its text for messages."""

    bytes: int
    text: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.text:
            object.__setattr__(self, "text", str(self.bytes))

    @classmethod
    def parse(cls, value: str | int, *, key: str = "size") -> Size:
        return cls(parse_size(value, key=key), str(value))

    def __str__(self) -> str:
        return self.text
