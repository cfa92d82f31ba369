"""One loader for every rule's YAML fixture cases (tests/lint/fixtures/<rule-name>.yaml).

A case: ``sql``, ``expect`` (fail/pass), optional ``severity`` (of the finding), ``pg_version``,
``mode`` (migration, the default, or file), ``setup`` (earlier applied SQL; defaults to the
file's), ``sizes`` ({table: [rows, bytes]}), ``settings`` (LintSettings fields), ``parse_error``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pgshift.config import LintSettings
from pgshift.lint.model import TableSize
from pgshift.lint.registry import all_rules, rule_by_key
from tests.lint.helpers import fired, lint_snippet

FIXTURES = Path(__file__).parent / "fixtures"


def _cases() -> list[Any]:
    params = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        for case in data["cases"]:
            params.append(pytest.param(data["rule"], data.get("setup", ""), case,
                                       id=f"{path.stem}:{case['name']}"))
    return params


def test_every_rule_has_pass_and_fail_fixtures() -> None:
    for rule in all_rules():
        path = FIXTURES / f"{rule.name}.yaml"
        assert path.exists(), f"missing fixture file {path.name}"
        data = yaml.safe_load(path.read_text())
        assert data["rule"] == rule.id
        expects = {c["expect"] for c in data["cases"]}
        assert expects == {"pass", "fail"}, f"{path.name} needs pass and fail cases"


@pytest.mark.parametrize(("rule_id", "setup", "case"), _cases())
def test_fixture_case(rule_id: str, setup: str, case: dict[str, Any], tmp_path: Path) -> None:
    assert rule_by_key(rule_id) is not None
    sizes = {k: TableSize(int(v[0]), int(v[1])) for k, v in (case.get("sizes") or {}).items()}
    settings = LintSettings(**case["settings"]) if case.get("settings") else None
    report = lint_snippet(case["sql"], tmp_path, setup=case.get("setup", setup), pg_version=case.get("pg_version"),
                          mode=case.get("mode", "migration"), sizes=sizes or None, settings=settings)
    severities = fired(report, rule_id)
    if case["expect"] == "fail":
        assert severities, f"{rule_id} should fire: {report.to_json()}"
        if "severity" in case:
            assert case["severity"] in severities, severities
    else:
        assert not severities, f"{rule_id} should not fire: {report.to_json()}"
    assert bool(report.parse_errors) == bool(case.get("parse_error")), report.parse_errors
