"""Lint's speed work (#17) must not change a single finding: the full reports (findings, parse errors,
locks held after each statement) over the bench's cases, the corpus histories and the bench's mixed
statements, in and out of a transaction, against digests written by the code before that work.

After a deliberate change to what lint reports, rewrite the digests and say why in the commit:
``.venv/bin/python -m tests.lint.test_findings_unchanged --write``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from pgshift import api
from pgshift.config import Settings
from pgshift.lint.engine import lint_sql
from pgshift.lint.model import LintReport

ROOT = Path(__file__).resolve().parents[2]
DIGESTS = Path(__file__).parent / "fixtures" / "findings-digests.json"
CASES = sorted((ROOT / "bench" / "lint" / "cases").glob("*.sql"))
CORPUS = sorted(p for p in (ROOT / "tests" / "corpus").iterdir() if p.is_dir())


def _mixed(n: int) -> str:
    """The bench's mixed statements (bench/lint/run.py's TEMPLATES), ``n`` of them."""
    source = (ROOT / "bench" / "lint" / "run.py").read_text()
    block = source.split("TEMPLATES = [", 1)[1].split("\n]\n", 1)[0]
    templates = re.findall(r'^\s*"(.*)",$', block, re.M)
    assert len(templates) >= 20
    return "\n".join(templates[i % len(templates)].format(i=i) + ";" for i in range(n)) + "\n"


def _digest(report: LintReport) -> str:
    data = report.to_json()
    data["locks"] = [s.to_json() for s in report.lock_steps]
    data["autofix"] = [(f.autofix.inline, list(f.autofix.deferred)) if f.autofix else None for f in report.findings]
    text = json.dumps(data, sort_keys=True, default=str).replace(str(ROOT), "<root>")
    return hashlib.sha256(text.encode()).hexdigest()[:20] + f" {len(report.findings)}"


def _inputs() -> Iterator[tuple[str, str]]:
    """(name, digest) of every report the digests file holds."""
    for case in CASES:
        text = case.read_text()
        version = int(dict(re.findall(r"^-- ([a-z-]+): (\S+)$", text, re.M)).get("pg-version", "16"))
        for in_tx in (False, True):
            report = lint_sql(text, file=case.name, pg_version=version, transactional=in_tx, collect_locks=True)
            yield f"case {case.stem} tx={in_tx}", _digest(report)
    for folder in CORPUS:
        for in_tx in (False, True):
            options = api.LintOptions(pg_version=16, locks=True, down=True, assume_in_transaction=in_tx)
            report = api.lint(Settings(base_dir=folder), [str(folder)], options).report
            yield f"corpus {folder.name} tx={in_tx}", _digest(report)
    mixed = _mixed(400)
    for version in (11, 16):
        for in_tx in (False, True):
            for locks in (False, True):
                report = lint_sql(mixed, file="mixed.sql", pg_version=version, transactional=in_tx,
                                  collect_locks=locks)
                yield f"mixed pg{version} tx={in_tx} locks={locks}", _digest(report)


def test_every_report_is_what_it_was() -> None:
    expected = json.loads(DIGESTS.read_text())
    got = dict(_inputs())
    assert len(got) > 150
    changed = sorted(name for name in expected.keys() | got.keys() if expected.get(name) != got.get(name))
    assert not changed, f"lint reports changed for {changed[:10]} ({len(changed)} in all); see this module's docstring"


if __name__ == "__main__" and "--write" in sys.argv:
    DIGESTS.write_text(json.dumps(dict(_inputs()), indent=1, sort_keys=True) + "\n")
