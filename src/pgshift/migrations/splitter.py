"""Split SQL into statements with PostgreSQL's own parser (pglast / libpg_query).

Dollar quotes, nested ``$tag$`` quotes, ``BEGIN ATOMIC`` bodies and comments survive because
the real grammar decides where a statement ends. Every statement keeps its file, line and
column; a parse error names file:line:column.

Large texts are split in chunks of about 256 kB and no parse tree is built, so time grows
linearly with the text and memory with a chunk (the statements' text is kept, once).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Protocol

from pglast import parser
from pglast.parser import ParseError

from pgshift.errors import SqlParseError
from pgshift.migrations.model import Statement

CHUNK_CHARS = 256 * 1024
_STATEMENT_END = re.compile(r";[ \t]*\r?\n")
# What may separate two statements: PostgreSQL's whitespace, ';' and '--' comments ('/*' is nested).
_GAP = re.compile(r"(?:[ \t\n\r\f\v;]+|--[^\n\r]*)*")


def line_col(text: str, offset: int, *, base_line: int = 1) -> tuple[int, int]:
    """1-based line and column of character ``offset`` in ``text``."""
    line = text.count("\n", 0, offset) + base_line
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


class _Positions:
    """line_col for increasing offsets, counting each newline once (line_col from 0 each time is quadratic)."""

    def __init__(self, text: str, base_line: int, start: int = 0) -> None:
        self.text, self.base_line, self.start = text, base_line, start  # start: where line base_line starts
        self.offset, self.line, self.line_start = start, base_line, start

    def at(self, offset: int) -> tuple[int, int]:
        if offset < self.offset:  # backwards: count again from the start
            self.offset, self.line, self.line_start = self.start, self.base_line, self.start
        newlines = self.text.count("\n", self.offset, offset)
        if newlines:
            self.line += newlines
            self.line_start = self.text.rfind("\n", self.offset, offset) + 1
        self.offset = offset
        return self.line, offset - self.line_start + 1


def _cut_points(text: str, start: int, end: int) -> Iterator[int]:
    """Offsets just after a line ending in ';', about every CHUNK_CHARS. A cut inside a string, a
    quoted name, a dollar-quoted body, a block comment or a BEGIN ATOMIC body leaves the chunk
    before it unterminated, so it fails to parse: a wrong cut is always noticed."""
    position = start + CHUNK_CHARS
    while position < end:
        match = _STATEMENT_END.search(text, position, end)
        if match is None:
            return
        yield match.end()
        position = match.end() + CHUNK_CHARS


def _skip_gap(text: str, position: int) -> int:
    while True:
        position = _GAP.match(text, position).end()  # type: ignore[union-attr]  # the pattern matches ""
        if not text.startswith("/*", position):
            return position
        depth, position = 1, position + 2
        while depth:
            opening, closing = text.find("/*", position), text.find("*/", position)
            if closing < 0:
                return len(text)
            if 0 <= opening < closing:
                depth, position = depth + 1, opening + 2
            else:
                depth, position = depth - 1, closing + 2


def _spans_of(piece: str) -> list[tuple[int, int]]:
    """(start, end) of each statement of ``piece``, from the first token to the last one.
    ParseError if it does not parse."""
    texts = parser.split(piece)
    spans: list[tuple[int, int]] = []
    position = 0
    for stmt in texts:
        start = _skip_gap(piece, position)
        if not piece.startswith(stmt, start):  # not where expected (odd whitespace): ask for exact slices
            return [(s.start, s.stop) for s in parser.split(piece, only_slices=True)]
        position = start + len(stmt)
        spans.append((start, position))
    return spans


def statement_spans(text: str, section_start: int = 0, section_end: int | None = None) -> Iterator[tuple[int, int]]:
    """(start, end) character offsets of every statement of ``text`` (or of its part from
    ``section_start`` to ``section_end``, without copying it), in order, chunk by chunk.
    ParseError (with the character offset in ``text``) if the text does not parse."""
    section_end = len(text) if section_end is None else section_end
    bounds = [section_start, *_cut_points(text, section_start, section_end), section_end]
    index = 0
    while index < len(bounds) - 1:
        start, end = bounds[index], bounds[index + 1]
        try:
            spans = _spans_of(text[start:end])
            index += 1
        except ParseError:
            # A cut fell inside a statement: try with the next chunk, then with the rest in one piece.
            try:
                if index + 2 >= len(bounds):
                    raise
                spans = _spans_of(text[start:bounds[index + 2]])
                index += 2
            except ParseError:
                try:
                    spans = _spans_of(text[start:section_end])
                except ParseError as exc:
                    offset = exc.args[1] if len(exc.args) > 1 and exc.args[1] is not None else section_end - start
                    raise ParseError(exc.args[0], start + int(offset)) from exc
                index = len(bounds)
        for a, b in spans:
            yield start + a, start + b


_NOT_BLANK = re.compile(r"\S")


def split_sql(text: str, *, file: str = "<stdin>", base_line: int = 1, start: int = 0,
              end: int | None = None) -> list[Statement]:
    """Statements of ``text``, or of ``text[start:end]`` without copying that part (a file's
    section); ``base_line`` is the file line where that text starts."""
    end = len(text) if end is None else end
    if _NOT_BLANK.search(text, start, end) is None:
        return []
    return _split(text, file, base_line, start, end)


def unsplit(text: str, *, file: str = "<stdin>", base_line: int = 1, start: int = 0,
            end: int | None = None) -> list[Statement]:
    """``text[start:end]`` as one statement holding all of it, parsing nothing: how the readers split
    for commands that run no SQL (``adopt`` records history only), so SQL that does not parse, or
    parses differently, cannot stop them."""
    end = len(text) if end is None else end
    if _NOT_BLANK.search(text, start, end) is None:
        return []
    text = text[start:end]
    first = len(text) - len(text.lstrip())
    line, column = line_col(text, first, base_line=base_line)
    return [Statement(text.strip(), file, line, column, 0)]


class Split(Protocol):
    """How a reader turns SQL text into statements: :func:`split_sql`, or :func:`unsplit`."""

    def __call__(self, text: str, *, file: str = ..., base_line: int = ..., start: int = ...,
                 end: int | None = ...) -> list[Statement]: ...


def _split(text: str, file: str, base_line: int, section_start: int, section_end: int) -> list[Statement]:
    positions = _Positions(text, base_line, section_start)
    statements: list[Statement] = []
    try:
        for start, end in statement_spans(text, section_start, section_end):
            sql = text[start:end].rstrip().rstrip(";").rstrip()
            if not sql:
                continue
            line, column = positions.at(start)
            statements.append(Statement(sql, file, line, column, len(statements)))
    except ParseError as exc:
        section = text[section_start:section_end]  # the error names (and lint re-reads) the part alone
        message = str(exc.args[0]) if exc.args else str(exc)
        offset = int(exc.args[1]) - section_start if len(exc.args) > 1 and exc.args[1] is not None else len(section)
        line, column = line_col(section, max(0, min(offset, len(section))), base_line=base_line)
        raise SqlParseError(message, file=file, line=line, column=column, text=section,
                            base_line=base_line) from exc
    return statements


def split_down(parse: Callable[[], list[Statement]]) -> tuple[list[Statement] | None, SqlParseError | None]:
    """(statements, None) of a down part, or (None, its parse error): the original tools only
    fail when that rollback runs, so a broken down part must not stop loading the folder."""
    try:
        return parse(), None
    except SqlParseError as exc:
        return None, exc


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


def first_word(sql: str) -> str | None:
    """The statement's first word in upper case, after comments and whitespace; None when it does not
    start with a plain ASCII word (a parenthesis, or a name with other characters)."""
    match = _WORD.match(sql, _skip_gap(sql, 0))
    if match is None or not sql[match.end():match.end() + 1].isascii():
        return None
    return match.group().upper()
