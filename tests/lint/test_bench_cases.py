"""The bench's hazard cases are all flagged and its safe cases are all clean."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgshift.lint.engine import lint_sql

CASES = sorted((Path(__file__).resolve().parents[2] / "bench" / "lint" / "cases").glob("*.sql"))


def test_at_least_60_cases() -> None:
    assert len([c for c in CASES if "-- expect: hazard" in c.read_text()]) >= 60


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_case(case: Path) -> None:
    text = case.read_text()
    head = dict(re.findall(r"^-- ([a-z-]+): (\S+)$", text, re.M))
    report = lint_sql(text, file=str(case), pg_version=int(head.get("pg-version", "16")))
    flagged = bool(report.active) or bool(report.parse_errors)
    assert flagged == (head["expect"] == "hazard"), report.to_json()
