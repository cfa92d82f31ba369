"""Every rule, discovered from the modules in ``pgshift.lint.rules`` (one rule per module)."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from pgshift.lint import rules as rules_pkg
from pgshift.lint.model import Rule


@cache
def all_rules() -> tuple[Rule, ...]:
    """All rules sorted by id; ids and names are checked to be unique."""
    found: list[Rule] = []
    for info in pkgutil.iter_modules(rules_pkg.__path__):
        module = importlib.import_module(f"{rules_pkg.__name__}.{info.name}")
        rule = getattr(module, "RULE", None)
        if isinstance(rule, Rule):
            found.append(rule)
    found.sort(key=lambda r: r.id)
    ids = [r.id for r in found]
    names = [r.name for r in found]
    if len(set(ids)) != len(ids) or len(set(names)) != len(names):
        raise RuntimeError("duplicate lint rule id or name")
    return tuple(found)


def rule_by_key(key: str) -> Rule | None:
    """A rule by id (any case) or kebab-case name."""
    wanted = key.lower()
    for rule in all_rules():
        if rule.id.lower() == wanted or rule.name == wanted:
            return rule
    return None


def rules_by_kind(rules: list[Rule]) -> dict[str, list[Rule]]:
    table: dict[str, list[Rule]] = {}
    for rule in rules:
        for k in rule.kinds:
            table.setdefault(k, []).append(rule)
    return table
