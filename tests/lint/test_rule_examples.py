"""Each rule's documented bad example fires the rule, and its good example does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgshift.lint.model import Rule
from pgshift.lint.registry import all_rules
from tests.lint.helpers import fired, lint_snippet

RULES = all_rules()


def test_at_least_45_rules_with_unique_ids() -> None:
    assert len(RULES) >= 45
    assert len({r.id for r in RULES}) == len(RULES)
    for rule in RULES:
        assert rule.name == rule.name.lower() and " " not in rule.name
        assert rule.summary and rule.bad and rule.good and rule.safe
        assert rule.severity in ("error", "warning", "note")


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.id}-{r.name}")
def test_bad_example_fires(rule: Rule, tmp_path: Path) -> None:
    report = lint_snippet(rule.bad, tmp_path, setup=rule.setup, pg_version=rule.example_version)
    assert fired(report, rule.id), f"{rule.id} did not fire on its bad example: {report.to_json()}"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.id}-{r.name}")
def test_good_example_is_clean(rule: Rule, tmp_path: Path) -> None:
    report = lint_snippet(rule.good, tmp_path, setup=rule.setup, pg_version=rule.example_version)
    assert not fired(report, rule.id), f"{rule.id} fired on its good example: {report.to_json()}"
