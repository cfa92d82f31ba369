"""Operations migrations go through the same front door as SQL ones (#13): `migrate --dry-run` prints
the expand steps, `rollback` points at the command that undoes them, `contract` honours backup.policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from pgshift import api
from pgshift.config import Settings
from pgshift.migrations.model import Migration, Statement
from tests.helpers import run_pgshift

Conn = psycopg.Connection[Any]

OPS = """lock_timeout: 75ms
operations:
  - add_column:
      table: items
      column: {name: note, type: text, default: "'n/a'", nullable: false}
      up: "'filled ' || qty"
  - create_index: {table: items, name: items_qty_idx, columns: [qty]}
  - rename_column: {table: items, from: label, to: title}
"""


def _project(tmp_path: Path, conn: Conn, files: dict[str, str]) -> Path:
    conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, qty int, label text);"
                 "INSERT INTO items SELECT g, g % 5, 'l' || g FROM generate_series(1, 50) g")
    folder = tmp_path / "migrations"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return tmp_path


def _columns(conn: Conn) -> list[str]:
    return [str(r[0]) for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'items'::regclass AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum").fetchall()]


class _Statements:
    """Every statement expand runs, through the observer interface the Executor uses."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def before(self, conn: Any, migration: Migration, stmt: Statement) -> None:
        self.seen.append(stmt.sql)

    def after(self, conn: Any, migration: Migration, stmt: Statement, error: BaseException | None) -> None:
        pass


def test_dry_run_prints_the_expand_steps_that_migrate_then_runs(tmp_path: Path, db_url: str, conn: Conn) -> None:
    project = _project(tmp_path, conn, {"1_items.ops.yaml": OPS})
    before = _columns(conn)
    result = run_pgshift(["migrate", "--dry-run"], cwd=project, url=db_url)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert 'ALTER TABLE "public"."items" ADD COLUMN "note" text;' in out
    assert "SET LOCAL lock_timeout = '75ms';" in out and "SET lock_timeout = '75ms';" in out
    assert 'CREATE INDEX CONCURRENTLY IF NOT EXISTS "items_qty_idx" ON "public"."items"' in out
    assert "(autocommit: cannot run in a transaction)" in out
    assert "-- UPDATE public.items SET" in out and "in keyset batches" in out
    assert "retried up to 30 times" in out
    # Nothing ran: the catalog and the ledger are as they were.
    assert _columns(conn) == before
    assert conn.execute("SELECT to_regclass('pgshift.ops_state')").fetchone() in ((None,),)
    json_out = json.loads(run_pgshift(["migrate", "--dry-run", "--json"], cwd=project, url=db_url).stdout)
    assert json_out["dry_run"][0]["mode"] == "operations (expand)"

    # Every statement expand then runs is in the dry run, verbatim (a backfill as its UPDATE).
    seen = _Statements()
    api.migrate(Settings(database_url=db_url, base_dir=project, migrations_dir="migrations"), observer=seen)
    assert "note" in _columns(conn) and len(seen.seen) > 5
    for statement in seen.seen:
        if statement.startswith("backfill "):
            update = "UPDATE " + statement.split(": UPDATE ", 1)[1]  # as the observer sees it before it runs
            assert f"-- {update} -- in keyset batches" in out, statement
        else:
            assert f"{statement};" in out, statement
