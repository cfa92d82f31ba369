"""Transaction blocks: how a migration part's own BEGIN / COMMIT / END divide it when its tool runs it.

Each tool wraps a file its own way (docs/migrations.md, "Files with their own BEGIN / COMMIT",
names the source checked for each):

- ``script``: golang-migrate, Prisma and dbmate send the whole file as ONE simple query (dbmate
  inside its own transaction), Flyway runs it in one JDBC transaction that the driver reopens after
  a COMMIT. PostgreSQL runs a multi-statement query as one implicit transaction; a BEGIN turns the
  implicit transaction into an explicit one (statements before it join it) and a COMMIT ends
  whichever is open, so the file splits after each COMMIT.
- ``tool-then-statement``: goose (transactional) runs each statement with its own Exec inside one
  transaction; a COMMIT in the file ends that transaction, and every later statement commits on
  its own unless a BEGIN groups them up to the next COMMIT.
- ``statement``: goose ``NO TRANSACTION`` and Flyway ``executeInTransaction=false``: each
  statement commits on its own; BEGIN ... COMMIT groups statements into one transaction.

A part without BEGIN / COMMIT / END (or a native pgshift migration, whose runner owns the
transaction) has no blocks: it runs as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pgshift.errors import MigrationSourceError
from pgshift.migrations.model import Migration, Statement

Boundaries = Literal["script", "tool-then-statement", "statement"]


@dataclass(frozen=True)
class Block:
    """Statements ``start``..``end`` (exclusive) of a part, run in one transaction, or alone in
    autocommit when not ``transactional``. ``explicit``: the file's own BEGIN opened it."""

    start: int
    end: int
    transactional: bool = True
    explicit: bool = False


def boundaries_of(migration: Migration) -> Boundaries | None:
    """How the tool that wrote ``migration`` treats the file's own transaction control."""
    fmt = migration.source_format
    if fmt in ("golang-migrate", "prisma", "dbmate"):
        return "script"
    if fmt == "flyway":
        return "script" if migration.transactional else "statement"
    if fmt == "goose":
        return "tool-then-statement" if migration.transactional else "statement"
    return None


def segments(kinds: list[str | None], style: Boundaries) -> tuple[list[Block], int | None]:
    """The transactions the tool runs, from each statement's transaction-control kind ('begin',
    'commit', or None); contiguous, covering every statement. Also the index of a BEGIN left
    open at the end of the part (None when every BEGIN is closed)."""
    blocks: list[Block] = []
    open_start: int | None = 0 if style == "tool-then-statement" else None
    explicit = False
    opened_at: int | None = None  # the BEGIN of the open explicit transaction

    def close(end: int) -> None:
        nonlocal open_start, explicit, opened_at
        assert open_start is not None
        blocks.append(Block(open_start, end, True, explicit))
        open_start, explicit, opened_at = None, False, None

    for index, kind in enumerate(kinds):
        if kind == "begin":
            if open_start is None:
                open_start = index
            if not explicit:  # BEGIN inside an implicit (or the tool's) transaction makes it explicit
                explicit, opened_at = True, index
        elif kind == "commit":
            if open_start is not None:
                close(index + 1)
        elif open_start is None:
            if style == "script":
                open_start = index  # a new implicit transaction up to the next COMMIT or the end
            else:
                blocks.append(Block(index, index + 1))
    unterminated = opened_at
    if open_start is not None:
        close(len(kinds))
    return _contiguous(blocks, len(kinds)), unterminated


def _contiguous(blocks: list[Block], total: int) -> list[Block]:
    """Stretch blocks over the statements between them (stray COMMITs, which run nothing)."""
    out: list[Block] = []
    previous = 0
    for block in blocks:
        out.append(Block(previous, block.end, block.transactional, block.explicit))
        previous = block.end
    if out and previous < total:
        last = out[-1]
        out[-1] = Block(last.start, total, last.transactional, last.explicit)
    return out


def _tool_commits_at_end(migration: Migration) -> bool:
    """dbmate, goose and Flyway end a transactional migration with their own COMMIT, which also
    commits a BEGIN the file left open; golang-migrate and Prisma leave it open (never applied)."""
    return migration.transactional and migration.source_format in ("dbmate", "goose", "flyway")


def plan_blocks(
    migration: Migration, statements: Sequence[Statement], kind_of: Callable[[str], str | None],
    autocommit_reason: Callable[[str], str | None],
) -> list[Block] | None:
    """The blocks the runner runs ``statements`` (a part of ``migration``) in, or None when the part
    has no BEGIN / COMMIT / END of its own and runs as before. A statement PostgreSQL refuses in a
    transaction runs alone in autocommit; inside the file's own BEGIN ... COMMIT it is refused,
    as its tool (and PostgreSQL) would."""
    style = boundaries_of(migration)
    kinds = [kind_of(s.sql) for s in statements]
    if style is None or not any(k in ("begin", "commit") for k in kinds):
        return None
    found, unterminated = segments(kinds, style)
    if unterminated is not None and not _tool_commits_at_end(migration):
        begin = statements[unterminated]
        raise MigrationSourceError(
            f"{begin.where}: {begin.summary} has no COMMIT (or END) after it in {migration.label}: "
            "its transaction would stay open and never commit.",
            hint="end the transaction with COMMIT; where it should end.",
        )
    # In one pass: a streamed part (pgshift.migrations.splitter.StreamedStatements) is read again per pass.
    refused = [kind is None and autocommit_reason(s.sql) is not None for s, kind in zip(statements, kinds, strict=True)]
    blocks: list[Block] = []
    for block in found:
        alone = [i for i in range(block.start, block.end) if refused[i]]
        if not alone:
            blocks.append(block)
            continue
        if block.explicit:
            stmt = statements[alone[0]]
            raise MigrationSourceError(
                f"{stmt.where}: {autocommit_reason(stmt.sql)} cannot run inside a transaction block, and "
                f"{migration.label} puts it inside its own BEGIN ... COMMIT (lines "
                f"{statements[block.start].line}-{statements[block.end - 1].line}); "
                f"{migration.source_format} would fail on it too.",
                hint="move it after the COMMIT (pgshift then runs it on its own) or into a migration of its own.",
            )
        # An implicit transaction with such a statement runs statement by statement, as a file
        # without BEGIN does: each statement in its own transaction, that one in autocommit.
        blocks += [Block(i, i + 1, i not in alone) for i in range(block.start, block.end)]
    blocks = _contiguous(blocks, len(statements))
    if len(blocks) == 1 and blocks[0].transactional and migration.transactional:
        return None  # one transaction around everything: exactly what the runner does anyway
    return blocks
