"""Inline suppressions: ``-- pgshift:ignore <rule>[,<rule>] -- <reason>`` for the next
statement and ``-- pgshift:ignore-file <rule> -- <reason>`` for the whole file."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_DIRECTIVE = re.compile(
    r"--\s*pgshift:(?P<scope>ignore-file|ignore)\s+(?P<rules>[A-Za-z0-9_,\- ]+?)\s*(?:--\s*(?P<reason>.*?))?\s*$"
)


@dataclass
class Suppression:
    file: str
    line: int
    rules: tuple[str, ...]  # ids or names, lower case
    reason: str
    whole_file: bool
    used: bool = False
    target: int | None = None  # line of the statement it applies to

    def matches(self, rule_id: str, rule_name: str) -> bool:
        return any(r in (rule_id.lower(), rule_name, "all") for r in self.rules)


def read_suppressions(text: str, file: str) -> list[Suppression]:
    if "pgshift:ignore" not in text:
        return []
    return suppressions_on(enumerate(text.splitlines(), start=1), file)


def suppressions_on(lines: Iterable[tuple[int, str]], file: str) -> list[Suppression]:
    """The suppressions of ``file`` on its (1-based number, text) lines; only those containing
    "pgshift:ignore" can have one."""
    found: list[Suppression] = []
    for number, line in lines:
        match = _DIRECTIVE.search(line)
        if not match:
            continue
        rules = tuple(r.strip().lower() for r in re.split(r"[,\s]+", match.group("rules")) if r.strip())
        found.append(Suppression(file, number, rules, (match.group("reason") or "").strip(),
                                 match.group("scope") == "ignore-file"))
    return found


def attach(suppressions: list[Suppression], statement_lines: list[int]) -> None:
    """Point each line suppression at the first statement that starts after it."""
    ordered = sorted(statement_lines)
    for sup in suppressions:
        if sup.whole_file:
            continue
        sup.target = next((line for line in ordered if line > sup.line), None)
