"""pgshift.rehearsal.shape.declared_shape: the catalog an operations file declares, taken on the real server
and rolled back (every operation's example is checked against it in tests/ops/test_operation_modules.py)."""

from __future__ import annotations

from typing import Any

import psycopg

from pgshift.ops.model import parse_document
from pgshift.rehearsal import catalog
from pgshift.rehearsal.shape import declared_shape


def test_the_shape_is_taken_on_emptied_tables_and_nothing_is_kept(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE TABLE users (id int PRIMARY KEY, email text, legacy text); "
                 "INSERT INTO users VALUES (1, NULL, 'x'), (2, 'b@x', 'y')")
    before = catalog.snapshot(conn)
    ops = parse_document([{"set_not_null": {"table": "users", "column": "email"}},
                          {"drop_column": {"table": "users", "column": "legacy"}}], "f.ops.yaml")
    shape = declared_shape(conn, ops)
    assert shape.snapshot is not None and shape.error is None and shape.skipped is None
    assert [c.line() for c in catalog.diff(before, shape.snapshot)] == [
        "~ column public.users.email: text null position 2  ->  text not null position 2",
        "- column public.users.legacy: text null position 3"]
    # Rolled back: the schema and the rows (NOT NULL was declared on emptied tables) are as they were.
    assert catalog.snapshot(conn) == before
    assert conn.execute("SELECT count(*) FROM users").fetchone() == (2,)
    assert conn.autocommit


def test_a_statement_outside_a_transaction_block_skips_and_a_failing_one_says_which(
        conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE TABLE t (id int)")
    concurrent = parse_document([{"sql": {"up": "CREATE INDEX CONCURRENTLY t_id ON t (id)"}}], "f.ops.yaml")
    skipped = declared_shape(conn, concurrent)
    assert skipped.snapshot is None and skipped.error is None
    assert skipped.skipped == "operation 1 (sql): CREATE INDEX CONCURRENTLY t_id ON t (id) cannot run in a " \
                              "transaction block"
    broken = parse_document([{"add_column": {"table": "nosuch", "column": {"name": "a", "type": "int"}}}], "f.ops.yaml")
    failed = declared_shape(conn, broken)
    assert failed.snapshot is None and failed.error is not None
    assert failed.error.startswith('operation 1 (add_column): ALTER TABLE "public"."nosuch" ADD COLUMN "a" int: '
                                   'relation "public.nosuch" does not exist')
    assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 't_id'").fetchone() == (0,)
