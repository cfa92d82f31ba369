"""The committed docs/rules/ pages match the rule metadata."""

from __future__ import annotations

from pathlib import Path

from pgshift.lint.docs import main, render_all

DOCS = Path(__file__).resolve().parents[2] / "docs" / "rules"


def test_committed_rule_docs_are_up_to_date() -> None:
    assert main(["--check", str(DOCS)]) == 0, "run: python -m pgshift.lint.docs"


def test_every_rule_page_names_lock_and_examples() -> None:
    pages = render_all()
    page = pages["PS001.md"]
    assert "SHARE" in page and "CREATE INDEX CONCURRENTLY" in page and "## Bad" in page
    assert len(pages) >= 46
