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


DONE = [r for r in all_rules() if r.done_when]


def test_the_once_per_unit_rules_are_marked() -> None:
    assert {(r.id, r.done_when) for r in DONE} == {("PS037", "lock_timeout"), ("PS038", "statement_timeout")}


@pytest.mark.parametrize("rule", DONE, ids=lambda r: f"{r.id}-{r.name}")
def test_a_rule_done_in_a_unit_loses_no_finding(rule: Rule, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its once-per-unit finding, in two files linted one after the other (a new unit: called again), is the same
    with the mark as with it taken off, and the engine stops calling the rule once the flag is set."""
    text = "SELECT 1;\nALTER TABLE a ADD COLUMN b text;\nALTER TABLE c ADD COLUMN d text;\nSELECT 2;\n"
    reports = {}
    for marked in (True, False):
        called: list[str] = []

        def check(ctx: Ctx, original: Rule = rule, seen: list[str] = called) -> Iterator[Hit]:
            seen.append(ctx.statement.sql)
            return iter(original.check(ctx))

        _lint_with_only(monkeypatch, dataclasses.replace(rule, check=check, done_when=rule.done_when if marked else ""))
        first, second = engine.lint_sql(text, file="a.sql"), engine.lint_sql(text, file="b.sql")
        reports[marked] = [(f.file, f.line, f.message) for f in first.findings + second.findings], called
    (with_mark, called_marked), (without_mark, called_all) = reports[True], reports[False]
    assert with_mark == without_mark
    assert [line for _, line, _ in with_mark] == [2, 2]  # once per file, on the first ALTER TABLE
    assert len(called_all) == 8
    assert called_marked == ["SELECT 1", "ALTER TABLE a ADD COLUMN b text"] * 2
