"""The engine calls a rule only for the statements its metadata says it judges: a rule marked
``in_transaction`` is skipped for auto-committed statements (#17: most statements of a plain file),
and that mark must never hide a finding."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgshift.lint import engine
from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.registry import all_rules, rules_by_kind
from tests.lint.helpers import fired, lint_snippet

GATED = [r for r in all_rules() if r.in_transaction]


def test_the_transaction_rules_are_marked() -> None:
    assert {r.id for r in GATED} >= {"PS004", "PS014", "PS028", "PS039", "PS042", "PS060"}


def _lint_with_only(monkeypatch: pytest.MonkeyPatch, rule: Rule) -> None:
    """Lint runs ``rule`` alone, as given (the engine otherwise takes the registered rules)."""
    original = engine._options

    def with_rule(*args: object, **kwargs: object) -> engine.Options:
        opts = original(*args, **kwargs)  # type: ignore[arg-type]
        opts.rules = rules_by_kind([rule])
        return opts

    monkeypatch.setattr(engine, "_options", with_rule)


@pytest.mark.parametrize("rule", GATED, ids=lambda r: f"{r.id}-{r.name}")
def test_a_rule_marked_in_transaction_finds_nothing_outside_one(rule: Rule, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Its bad example, with the mark taken off so the engine calls it anyway, run auto-committed."""
    _lint_with_only(monkeypatch, dataclasses.replace(rule, in_transaction=False))
    inside = lint_snippet(rule.bad, tmp_path, setup=rule.setup, pg_version=rule.example_version)
    assert fired(inside, rule.id)  # in its migration's transaction
    body = rule.bad.replace("BEGIN;", "").replace("COMMIT;", "")
    outside = lint_snippet(body, tmp_path, setup=rule.setup, pg_version=rule.example_version, mode="file")
    assert not fired(outside, rule.id), outside.to_json()


def test_the_engine_calls_a_transaction_rule_only_inside_one(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, bool]] = []

    def check(ctx: Ctx) -> Iterator[Hit]:
        seen.append((ctx.statement.sql, ctx.tx.active))
        return iter(())

    _lint_with_only(monkeypatch, dataclasses.replace(next(r for r in all_rules() if r.id == "PS042"), check=check))
    engine.lint_sql("SELECT 1;\nBEGIN;\nSELECT 2;\nCOMMIT;\nSELECT 3;\n")
    assert seen == [("SELECT 2", True), ("COMMIT", True)]
