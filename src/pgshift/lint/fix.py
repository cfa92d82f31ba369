"""``--fix``: write the mechanical safe rewrite of findings that have one.

Statements that must run outside a transaction (CONCURRENTLY, VALIDATE after NOT VALID, the
SET NOT NULL sequence) move to a new migration marked ``-- pgshift:no-transaction`` that runs
right after the original; the rest is rewritten in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pgshift.lint.model import AutoFix, Finding, LintReport

_NATIVE = re.compile(r"^(?P<version>\d+)_(?P<name>[A-Za-z0-9_\-]+)\.sql$")


@dataclass
class FixResult:
    changed: list[Path] = field(default_factory=list)
    created: list[Path] = field(default_factory=list)
    fixed: list[Finding] = field(default_factory=list)


def _offset(text: str, line: int, column: int) -> int:
    lines = text.splitlines(keepends=True)
    return sum(len(x) for x in lines[: line - 1]) + column - 1


def _replace(text: str, finding: Finding, sql: str, fix: AutoFix) -> str | None:
    start = _offset(text, finding.line, finding.column)
    if text[start: start + len(sql)] != sql:
        return None  # the file changed since it was linted
    end = start + len(sql)
    if not fix.inline:
        semi = re.match(r"\s*;", text[end:])
        end += semi.end() if semi else 0
        return text[:start] + "-- moved by pgshift lint --fix to the no-transaction migration below" + text[end:]
    return text[:start] + fix.inline + text[end:]


def _deferred_path(path: Path) -> Path:
    match = _NATIVE.match(path.name)
    if match:
        version = int(match.group("version")) + 1
        width = len(match.group("version"))
        candidate = path.with_name(f"{version:0{width}d}_{match.group('name')}_no_transaction.sql")
        taken = {m.group("version") for p in path.parent.glob("*.sql") if (m := _NATIVE.match(p.name))}
        if f"{version:0{width}d}" not in taken:
            return candidate
    return path.with_name(f"{path.stem}.no_transaction.sql")


def apply_fixes(report: LintReport, statements: dict[tuple[str, int, int], str]) -> FixResult:
    """Rewrite files for every active finding with an autofix. ``statements`` maps
    (file, line, column) to the exact statement text that was linted."""
    result = FixResult()
    by_file: dict[str, list[Finding]] = {}
    seen: set[tuple[str, int, int]] = set()
    for f in report.active:
        key = (f.file, f.line, f.column)
        if f.autofix is None or key in seen or key not in statements or f.file == "<stdin>":
            continue
        seen.add(key)
        by_file.setdefault(f.file, []).append(f)
    for file, findings in by_file.items():
        path = Path(file)
        text = path.read_text(encoding="utf-8")
        deferred: list[str] = []
        # Bottom-up so earlier offsets stay valid.
        for f in sorted(findings, key=lambda x: (x.line, x.column), reverse=True):
            assert f.autofix is not None
            new = _replace(text, f, statements[(f.file, f.line, f.column)], f.autofix)
            if new is None:
                continue
            text = new
            deferred[:0] = list(f.autofix.deferred)
            result.fixed.append(f)
        path.write_text(text, encoding="utf-8")
        result.changed.append(path)
        if deferred:
            target = _deferred_path(path)
            body = ";\n\n".join(deferred) + ";\n"
            target.write_text(f"-- Written by pgshift lint --fix: runs outside a transaction, each statement on "
                              f"its own.\n-- pgshift:no-transaction\n-- pgshift:up\n{body}", encoding="utf-8")
            result.created.append(target)
    return result
