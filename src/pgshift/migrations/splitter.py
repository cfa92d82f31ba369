"""Split SQL into statements with PostgreSQL's own parser (pglast / libpg_query).

Dollar quotes, nested ``$tag$`` quotes, ``BEGIN ATOMIC`` bodies and comments survive because
the real grammar decides where a statement ends. Every statement keeps its file, line and
column; a parse error names file:line:column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pglast import parser
from pglast.parser import ParseError

from pgshift.errors import SqlParseError
from pgshift.migrations.classify import remember
from pgshift.migrations.model import Statement


def line_col(text: str, offset: int, *, base_line: int = 1) -> tuple[int, int]:
    """1-based line and column of character ``offset`` in ``text``."""
    before = text[:offset]
    line = before.count("\n") + base_line
    column = offset - (before.rfind("\n") + 1) + 1
    return line, column


_UNPARSED: ContextVar[bool] = ContextVar("pgshift_unparsed", default=False)


@contextmanager
def unparsed() -> Iterator[None]:
    """While active, ``split_sql`` parses nothing: each text becomes one statement holding all of it.
    For commands that run no SQL (``adopt`` records history only), so SQL that does not parse, or
    parses differently, cannot stop them."""
    token = _UNPARSED.set(True)
    try:
        yield
    finally:
        _UNPARSED.reset(token)


def split_sql(text: str, *, file: str = "<stdin>", base_line: int = 1) -> list[Statement]:
    """Statements of ``text``; ``base_line`` is the file line where ``text`` starts."""
    if not text.strip():
        return []
    if _UNPARSED.get():
        start = len(text) - len(text.lstrip())
        line, column = line_col(text, start, base_line=base_line)
        return [Statement(text.strip(), file, line, column, 0)]
    try:
        raw = parser.parse_sql(text)
    except ParseError as exc:
        message = str(exc.args[0]) if exc.args else str(exc)
        offset = int(exc.args[1]) if len(exc.args) > 1 else 0
        line, column = line_col(text, max(0, min(offset, len(text))), base_line=base_line)
        raise SqlParseError(message, file=file, line=line, column=column, text=text, base_line=base_line) from exc
    statements: list[Statement] = []
    for stmt in raw:
        start = int(stmt.stmt_location or 0)
        end = start + stmt.stmt_len if stmt.stmt_len else len(text)
        chunk = text[start:end]
        stripped = chunk.lstrip()
        start += len(chunk) - len(stripped)
        sql = stripped.rstrip().rstrip(";").rstrip()
        if not sql:
            continue
        line, column = line_col(text, start, base_line=base_line)
        remember(sql, stmt.stmt)
        statements.append(Statement(sql, file, line, column, len(statements)))
    return statements


def split_down(parse: Callable[[], list[Statement]]) -> tuple[list[Statement] | None, SqlParseError | None]:
    """(statements, None) of a down part, or (None, its parse error): the original tools only
    fail when that rollback runs, so a broken down part must not stop loading the folder."""
    try:
        return parse(), None
    except SqlParseError as exc:
        return None, exc
