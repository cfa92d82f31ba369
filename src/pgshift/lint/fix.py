"""``--fix``: write the mechanical safe rewrite of findings that have one.

Statements that must run outside a transaction (CONCURRENTLY, VALIDATE after NOT VALID, the
SET NOT NULL sequence) move to a new migration marked ``-- pgshift:no-transaction`` that runs
right after the original; the rest is rewritten in place. A file over 1 MB is streamed through,
never held: only the statements fixed are rewritten, the same bytes as a whole-file rewrite.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from pgshift.lint.model import AutoFix, Finding, LintReport
from pgshift.migrations import files

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
    for key, f in fixable(report).items():
        if key in statements:
            by_file.setdefault(f.file, []).append(f)
    for file, findings in by_file.items():
        path = Path(file)
        deferred: list[str] = []
        fixed = _rewrite_streamed(path, findings, statements) if _streams(path) else None
        if fixed is None:
            text = path.read_text(encoding="utf-8")
            fixed = []
            # Bottom-up so earlier offsets stay valid.
            for f in sorted(findings, key=lambda x: (x.line, x.column), reverse=True):
                assert f.autofix is not None
                new = _replace(text, f, statements[(f.file, f.line, f.column)], f.autofix)
                if new is None:
                    continue
                text = new
                fixed.append(f)
            path.write_text(text, encoding="utf-8")
        for f in fixed:  # bottom-up, as they were applied
            assert f.autofix is not None
            deferred[:0] = list(f.autofix.deferred)
            result.fixed.append(f)
        result.changed.append(path)
        if deferred:
            target = _deferred_path(path)
            body = ";\n\n".join(deferred) + ";\n"
            target.write_text(f"-- Written by pgshift lint --fix: runs outside a transaction, each statement on "
                              f"its own.\n-- pgshift:no-transaction\n-- pgshift:up\n{body}", encoding="utf-8")
            result.created.append(target)
    return result


def fixable(report: LintReport) -> dict[tuple[str, int, int], Finding]:
    """The findings --fix rewrites, by (file, line, column) of their statement: the first active one
    with an autofix per statement, in files (not stdin)."""
    found: dict[tuple[str, int, int], Finding] = {}
    for f in report.active:
        key = (f.file, f.line, f.column)
        if f.autofix is not None and key not in found and f.file != "<stdin>":
            found[key] = f
    return found


def _streams(path: Path) -> bool:
    try:
        return path.stat().st_size > files.STREAM_BYTES
    except OSError:
        return False  # read_text says why


class _OtherLineBreaks(Exception):
    """The file has line breaks str.splitlines counts besides newlines: its lines are counted whole."""


# What str.splitlines counts as a line break in text read with universal newlines, besides "\n".
_OTHER_BREAKS = re.compile("[\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_SPACE = re.compile(r"\s*")


class _Copier:
    """The file's text (read as Path.read_text reads it) copied to ``out`` a piece at a time, up to
    the places rewritten; holds a piece and the statement being rewritten."""

    def __init__(self, path: Path, out: TextIO) -> None:
        self.file = open(path, encoding="utf-8")  # noqa: SIM115  (closed by close())
        self.out = out
        self.buffer = ""  # the text from offset self.at that is neither written nor skipped yet
        self.at = 0
        self.line, self.line_start = 1, 0  # newlines counted up to self.counted
        self.counted = 0
        self.done = False

    def close(self) -> None:
        self.file.close()

    def _more(self) -> bool:
        piece = "" if self.done else self.file.read(files._READ_CHARS)
        if not piece:
            self.done = True
            return False
        if _OTHER_BREAKS.search(piece):
            raise _OtherLineBreaks
        self.buffer += piece
        return True

    def _count(self, upto: int) -> None:
        """Count the lines of the text up to offset ``upto`` (within the buffer)."""
        if upto <= self.counted:
            return
        chunk = self.buffer[self.counted - self.at:upto - self.at]
        newlines = chunk.count("\n")
        if newlines:
            self.line += newlines
            self.line_start = self.counted + chunk.rindex("\n") + 1
        self.counted = upto

    def _drop(self, upto: int, *, write: bool) -> None:
        """Write (or skip) the text up to offset ``upto``, which the buffer holds."""
        self._count(upto)
        if write:
            self.out.write(self.buffer[:upto - self.at])
        self.buffer = self.buffer[upto - self.at:]
        self.at = upto

    def _hold(self, upto: int) -> bool:
        """Read until the buffer holds the text up to offset ``upto``; False at the end of the text."""
        while self.at + len(self.buffer) < upto:
            if not self._more():
                return False
        return True

    def offset_of(self, line: int, column: int) -> int | None:
        """The offset of ``line``:``column`` as fix._offset counts it; None past the end of the text."""
        while self.line < line:
            found = self.buffer.find("\n", self.counted - self.at)
            if found >= 0:
                self._count(self.at + found + 1)
                continue
            self._drop(self.at + len(self.buffer), write=True)  # before the line: written unchanged
            if not self._more():
                return None
        return self.line_start + column - 1

    def replace(self, start: int, sql: str, fix: AutoFix) -> bool:
        """_replace at offset ``start``: False (nothing changed) when the text there is not ``sql``."""
        if start < self.at or not self._hold(start + len(sql)):
            return False
        if self.buffer[start - self.at:start - self.at + len(sql)] != sql:
            return False
        self._drop(start, write=True)
        end = start + len(sql)
        if fix.inline:
            self.out.write(fix.inline)
        else:
            while True:  # a ';' after the statement's whitespace goes too
                space = _SPACE.match(self.buffer, end - self.at).end()  # type: ignore[union-attr]
                if space < len(self.buffer) or not self._more():
                    break
            if self.buffer.startswith(";", space):
                end = self.at + space + 1
            self.out.write("-- moved by pgshift lint --fix to the no-transaction migration below")
        self._drop(end, write=False)
        return True

    def rest(self) -> None:
        self._drop(self.at + len(self.buffer), write=True)
        while self._more():
            self._drop(self.at + len(self.buffer), write=True)


def _rewrite_streamed(path: Path, findings: list[Finding],
                      statements: dict[tuple[str, int, int], str]) -> list[Finding] | None:
    """The fixes of a large file written as its text streams through (top-down, as the whole-file
    rewrite does bottom-up), into a file beside it that then replaces it. The findings fixed, from
    the bottom up; None when the file is to be rewritten whole (its line breaks, or it is unreadable)."""
    real = Path(os.path.realpath(path))
    temporary = real.with_name(f".{real.name}.pgshift-fix")
    fixed: list[Finding] = []
    try:
        with open(temporary, "w", encoding="utf-8") as out:
            copier = _Copier(real, out)
            try:
                for f in sorted(findings, key=lambda x: (x.line, x.column)):
                    assert f.autofix is not None
                    start = copier.offset_of(f.line, f.column)
                    if start is not None and copier.replace(start, statements[(f.file, f.line, f.column)],
                                                            f.autofix):
                        fixed.append(f)
                copier.rest()
            finally:
                copier.close()
        shutil.copymode(real, temporary)
        os.replace(temporary, real)
    except (_OtherLineBreaks, OSError, UnicodeDecodeError):
        temporary.unlink(missing_ok=True)
        return None
    return fixed[::-1]
