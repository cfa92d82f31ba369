"""The transaction blocks pgshift derives from a file's own BEGIN / COMMIT / END are the ones its tool
runs: each tool's way of sending a file is replayed at the protocol level on a real server, with a
failing statement at every position, and what stays committed must be exactly the blocks before
the failing one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgshift.errors import MigrationSourceError
from pgshift.migrations.blocks import Block
from pgshift.migrations.model import Migration, SqlMigration
from pgshift.migrations.splitter import split_sql
from pgshift.runner.execute import transaction_blocks

Conn = psycopg.Connection[Any]
FAIL = "SELECT 1/0"

# Files as statement lists; every plain statement creates table tN, so what survives is visible.
FILES = {
    "before-begin-after-commit": ["t", "BEGIN", "t", "t", "COMMIT", "t"],
    "two-blocks-end": ["BEGIN", "t", "COMMIT", "t", "BEGIN", "t", "END", "t"],
    "commit-without-begin": ["t", "COMMIT", "t", "t"],
    "begin-inside": ["t", "t", "BEGIN", "t", "COMMIT", "COMMIT", "t"],
}


def _text(items: list[str], fail_at: int | None = None) -> str:
    out = []
    for index, item in enumerate(items):
        out.append((FAIL if index == fail_at else f"CREATE TABLE t{index} ()") if item == "t" else item)
    return ";\n".join(out) + ";\n"


def _migration(fmt: str, transactional: bool, text: str) -> Migration:
    return SqlMigration("1", "x", Path("1_x.sql"), split_sql(text, file="1_x.sql"), None, "", fmt,
                     transactional=transactional)


# -- each tool's way of running a file, as it reaches PostgreSQL ------------------------------------
def _one_query(conn: Conn, statements: list[str]) -> None:
    """golang-migrate (lib/pq Exec of the whole file), Prisma (simple_query), dbmate transaction:false."""
    conn.execute(";\n".join(statements).encode())


def _dbmate(conn: Conn, statements: list[str]) -> None:
    """dbmate: its own BEGIN, the whole section as one Exec, its COMMIT (rolled back on error)."""
    conn.execute("BEGIN")
    try:
        conn.execute(";\n".join(statements).encode())
    except psycopg.Error:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _goose(conn: Conn, statements: list[str]) -> None:
    """goose: its own BEGIN, one Exec per statement, its COMMIT (rolled back on error)."""
    conn.execute("BEGIN")
    try:
        for sql in statements:
            conn.execute(sql.encode())
    except psycopg.Error:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _each_alone(conn: Conn, statements: list[str]) -> None:
    """goose NO TRANSACTION and Flyway executeInTransaction=false: one autocommit Exec per statement."""
    for sql in statements:
        conn.execute(sql.encode())


def _flyway(conn: Conn, statements: list[str]) -> None:
    """Flyway over pgjdbc with autocommit off: the driver opens a transaction before any statement
    run while none is open (also after the file's own COMMIT); Flyway commits at the end."""
    for sql in statements:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            conn.execute("BEGIN")
        conn.execute(sql.encode())
    conn.execute("COMMIT")


TOOLS: dict[str, tuple[str, bool, Callable[[Conn, list[str]], None]]] = {
    "golang-migrate": ("golang-migrate", True, _one_query),
    "prisma": ("prisma", True, _one_query),
    "dbmate": ("dbmate", True, _dbmate),
    "dbmate transaction:false": ("dbmate", False, _one_query),
    "goose": ("goose", True, _goose),
    "goose NO TRANSACTION": ("goose", False, _each_alone),
    "flyway": ("flyway", True, _flyway),
    "flyway executeInTransaction=false": ("flyway", False, _each_alone),
}


def _tables(conn: Conn) -> set[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {str(r[0]) for r in rows}


def _expected(items: list[str], blocks: list[Block] | None, fail_at: int | None) -> set[str]:
    made = {f"t{i}" for i, item in enumerate(items) if item == "t" and i != fail_at}
    if fail_at is None:
        return made
    assert blocks is not None
    failing = next(b for b in blocks if b.start <= fail_at < b.end)
    return {t for t in made if int(t[1:]) < failing.start}


@pytest.mark.parametrize("tool", list(TOOLS))
def test_blocks_are_what_each_tool_commits(tool: str, db_url: str) -> None:
    fmt, transactional, run = TOOLS[tool]
    with psycopg.connect(db_url, autocommit=True) as conn:
        for name, items in FILES.items():
            plain = [i for i, item in enumerate(items) if item == "t"]
            for fail_at in [None, *plain]:
                text = _text(items, fail_at)
                migration = _migration(fmt, transactional, text)
                blocks = transaction_blocks(migration, migration.up, 15)
                for table in _tables(conn):
                    conn.execute(f'DROP TABLE "{table}"')
                try:
                    run(conn, [s.sql for s in migration.up])
                except psycopg.errors.DivisionByZero:
                    assert fail_at is not None
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.execute("ROLLBACK")  # what the tool's session ending does
                assert _tables(conn) == _expected(items, blocks, fail_at), (tool, name, fail_at, blocks)


def test_statements_before_begin_join_its_transaction() -> None:
    # PostgreSQL turns the implicit transaction of a multi-statement query into the explicit one.
    migration = _migration("golang-migrate", True, _text(FILES["before-begin-after-commit"]))
    assert transaction_blocks(migration, migration.up, 15) == [Block(0, 5, True, True), Block(5, 6, True, False)]


def test_goose_transaction_ends_at_the_first_commit() -> None:
    migration = _migration("goose", True, _text(["t", "COMMIT", "t", "t", "BEGIN", "t", "t", "COMMIT", "t"]))
    assert [(b.start, b.end) for b in transaction_blocks(migration, migration.up, 15) or []] == [
        (0, 2), (2, 3), (3, 4), (4, 8), (8, 9)]


def test_files_without_their_own_boundaries_run_as_before() -> None:
    for fmt in ("golang-migrate", "prisma", "dbmate", "goose", "flyway", "native"):
        plain = _migration(fmt, True, "CREATE TABLE a ();\nCREATE TABLE b ();\n")
        assert transaction_blocks(plain, plain.up, 15) is None
        wrapped = _migration(fmt, True, "BEGIN;\nCREATE TABLE a ();\nCOMMIT;\n")
        assert transaction_blocks(wrapped, wrapped.up, 15) is None  # one transaction, as the runner does
    native = _migration("native", True, _text(FILES["two-blocks-end"]))
    assert transaction_blocks(native, native.up, 15) is None  # pgshift's own format: the runner owns it


def test_concurrently_inside_a_declared_block_is_refused_and_outside_runs_alone() -> None:
    inside = _migration("golang-migrate", True,
                        "BEGIN;\nCREATE TABLE a (id int);\nCREATE INDEX CONCURRENTLY a_id ON a (id);\nCOMMIT;\n"
                        "CREATE TABLE b ();\n")
    with pytest.raises(MigrationSourceError, match=r"1_x.sql:3:1: CREATE INDEX CONCURRENTLY cannot run inside a "
                       r"transaction block.*lines 1-4"):
        transaction_blocks(inside, inside.up, 15)
    after = _migration("golang-migrate", True,
                       "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n"
                       "CREATE TABLE b ();\n")
    assert transaction_blocks(after, after.up, 15) == [
        Block(0, 3, True, True), Block(3, 4, False), Block(4, 5, True)]


def test_an_unterminated_begin_is_refused_where_the_tool_never_commits_it() -> None:
    text = "CREATE TABLE a ();\nCOMMIT;\nBEGIN;\nCREATE TABLE b ();\n"
    for fmt, transactional in (("golang-migrate", True), ("prisma", True), ("dbmate", False), ("goose", False)):
        migration = _migration(fmt, transactional, text)
        with pytest.raises(MigrationSourceError, match=r"1_x.sql:3:1: BEGIN has no COMMIT \(or END\)"):
            transaction_blocks(migration, migration.up, 15)
    # dbmate, goose and Flyway end their own transaction with a COMMIT that also closes it.
    for fmt in ("dbmate", "goose", "flyway"):
        migration = _migration(fmt, True, text)
        assert transaction_blocks(migration, migration.up, 15) is not None
