"""Operations migrations go through the same front door as SQL ones (#13): `migrate --dry-run` prints
the expand steps, `rollback` points at the command that undoes them, `contract` honours backup.policy."""

from __future__ import annotations

import json
import re
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


def _said(result: Any) -> str:
    return " ".join(result.stderr.split())


def test_rollback_of_an_expanded_ops_migration_names_abort_and_that_works(tmp_path: Path, db_url: str,
                                                                         conn: Conn) -> None:
    project = _project(tmp_path, conn, {"1_items.ops.yaml": OPS, "2_more.sql": "-- pgshift:up\nCREATE TABLE more "
                                        "(id int);\n-- pgshift:down\nDROP TABLE more;\n"})
    before = _columns(conn)
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    refused = run_pgshift(["rollback", "--steps", "2"], cwd=project, url=db_url)
    message = _said(refused)
    assert refused.returncode == 22, message
    assert "no down part" in message and "restore" not in message.lower()
    assert "Nothing was rolled back" in message and conn.execute("SELECT to_regclass('more')").fetchone() != (None,)
    # The commands its hint names, in order, undo both.
    commands = re.findall(r"`pgshift ([^`]+)`", message.split("Hint:", 1)[1])
    assert commands == ["rollback --to 1", "abort --version 1"], commands
    assert run_pgshift(commands[0].split(), cwd=project, url=db_url).returncode == 0
    again = run_pgshift(["rollback"], cwd=project, url=db_url)
    assert again.returncode == 22 and "Hint: run `pgshift abort --version 1`." in _said(again)
    aborted = run_pgshift(commands[1].split(), cwd=project, url=db_url)
    assert aborted.returncode == 0, aborted.stderr
    assert _columns(conn) == before
    status = json.loads(run_pgshift(["status", "--json"], cwd=project, url=db_url).stdout)
    assert status["pending"] == ["1", "2"]


def test_rollback_of_a_contracted_ops_migration_says_what_undoes_it(tmp_path: Path, db_url: str,
                                                                    conn: Conn) -> None:
    project = _project(tmp_path, conn, {"1_items.ops.yaml": OPS})
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    assert run_pgshift(["contract", "--no-backup"], cwd=project, url=db_url).returncode == 0
    refused = run_pgshift(["rollback"], cwd=project, url=db_url)
    message = _said(refused)
    assert refused.returncode == 11, message
    assert "it is contracted" in message and "neither rollback nor `pgshift abort` can undo it" in message
    assert "`pgshift restore <backup>`" in message and "`pgshift backup list`" in message
    # abort indeed cannot: the message does not send anyone there
    assert run_pgshift(["abort"], cwd=project, url=db_url).returncode == 22
    assert run_pgshift(["backup", "list"], cwd=project, url=db_url).returncode == 0
    assert "title" in _columns(conn) and "label" not in _columns(conn)


def _expanded(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT version, phase FROM pgshift.ops_state").fetchall()


def test_contract_that_drops_data_goes_through_backup_policy(tmp_path: Path, db_url: str, conn: Conn) -> None:
    project = _project(tmp_path, conn, {"1_items.ops.yaml": OPS})
    (project / "pgshift.toml").write_text('[backup]\npolicy = "never"\ndirectory = "backups"\n')
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    refused = run_pgshift(["contract"], cwd=project, url=db_url)
    message = _said(refused)
    assert refused.returncode == 19, message  # as migrate refuses a destructive migration
    assert "Refusing to contract: the contract of 1 items (" in message, message
    assert "finish public.items: drop sync triggers and old columns" in message
    assert "backup.policy is 'never' and there is no verified backup" in message and "--no-backup" in message
    assert "label" in _columns(conn) and _expanded(conn) == [("1", "expanded")]
    # abort, the recovery path, is never held back by the policy
    assert run_pgshift(["abort"], cwd=project, url=db_url).returncode == 0
    assert _expanded(conn) == [("1", "aborted")]

    # Under destructive-only the contract takes a verified backup first, then drops the old column.
    (project / "pgshift.toml").write_text('[backup]\npolicy = "destructive-only"\ndirectory = "backups"\n')
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    done = run_pgshift(["contract", "--json"], cwd=project, url=db_url)
    assert done.returncode == 0, done.stderr
    backup = Path(json.loads(done.stdout)["backup"])
    assert backup.parent == project / "backups"
    manifest = json.loads((backup / "manifest.json").read_text())
    assert {c for t in manifest.get("tables", []) if t["name"] == "items" for c in [t["rows"]]} == {50}
    assert "label" not in _columns(conn)


def test_contract_without_destructive_steps_needs_no_backup(tmp_path: Path, db_url: str, conn: Conn) -> None:
    project = _project(tmp_path, conn, {"1_idx.ops.yaml": "operations:\n  - create_index: {table: items, name: "
                                        "items_qty_idx, columns: [qty]}\n  - add_check: {table: items, name: "
                                        "qty_positive, check: \"qty >= 0\"}\n"})
    (project / "pgshift.toml").write_text('[backup]\npolicy = "never"\ndirectory = "backups"\n')
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    done = run_pgshift(["contract"], cwd=project, url=db_url)
    assert done.returncode == 0, done.stderr
    assert not (project / "backups").exists()


def test_no_backup_lets_a_destructive_contract_run_under_policy_never(tmp_path: Path, db_url: str,
                                                                      conn: Conn) -> None:
    project = _project(tmp_path, conn, {"1_drop.ops.yaml": "operations:\n  - drop_column: {table: items, "
                                        "column: label}\n"})
    (project / "pgshift.toml").write_text('[backup]\npolicy = "never"\ndirectory = "backups"\n')
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    assert run_pgshift(["contract"], cwd=project, url=db_url).returncode == 19
    forced = run_pgshift(["contract", "--no-backup"], cwd=project, url=db_url)
    assert forced.returncode == 0, forced.stderr
    assert "label" not in _columns(conn) and not (project / "backups").exists()


def test_dry_run_says_when_migrate_would_refuse_a_second_active_expand(tmp_path: Path, db_url: str,
                                                                       conn: Conn) -> None:
    project = _project(tmp_path, conn, {"1_items.ops.yaml": OPS})
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    (project / "migrations" / "2_more.ops.yaml").write_text(
        "operations:\n  - create_index: {table: items, name: items_id_qty_idx, columns: [id, qty]}\n")
    dry = run_pgshift(["migrate", "--dry-run"], cwd=project, url=db_url)
    assert dry.returncode == 0, dry.stderr
    assert "-- refused as things stand: migration 1 is expanded and not contracted" in dry.stdout
    real = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert real.returncode == 22 and "migration 1 is expanded and not contracted" in real.stderr


def test_the_refused_contracts_hint_works_take_a_backup_then_contract(tmp_path: Path, db_url: str,
                                                                       conn: Conn) -> None:
    project = _project(tmp_path, conn, {"1_drop.ops.yaml": "operations:\n  - drop_column: {table: items, "
                                        "column: label}\n"})
    (project / "pgshift.toml").write_text('[backup]\npolicy = "never"\ndirectory = "backups"\n')
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    refused = run_pgshift(["contract"], cwd=project, url=db_url)
    assert refused.returncode == 19 and "Hint: run `pgshift backup` first" in _said(refused)
    assert run_pgshift(["backup"], cwd=project, url=db_url).returncode == 0
    done = run_pgshift(["contract"], cwd=project, url=db_url)
    assert done.returncode == 0, done.stderr
    assert "label" not in _columns(conn)


def test_an_operation_step_waits_for_the_server_once_between_its_strong_lock_and_its_commit(
        tmp_path: Path, conn: Conn, db_url: str, monkeypatch: Any) -> None:
    """Each reply waited for while a step holds ACCESS EXCLUSIVE holds the application's queries back too:
    the statements after the lock go out together, read by libpq's own protocol trace of the connection."""
    from psycopg import pq

    traces: list[Path] = []
    handles: list[Any] = []  # kept open: libpq writes to the descriptor until the connection closes
    original = psycopg.connect

    def traced(*args: Any, **kwargs: Any) -> Any:
        connection = original(*args, **kwargs)
        traces.append(tmp_path / f"trace-{len(traces)}.txt")
        handles.append(traces[-1].open("w"))
        connection.pgconn.trace(handles[-1].fileno())
        connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        return connection

    monkeypatch.setattr(psycopg, "connect", traced)
    project = _project(tmp_path, conn, {"001_ops.ops.yaml": OPS})
    api.migrate(Settings(database_url=db_url, base_dir=project, migrations_dir="migrations"))
    monkeypatch.undo()
    for handle in handles:
        handle.close()
    lines = next(text for p in traces if "ADD COLUMN" in (text := p.read_text())).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("F") and "ADD COLUMN" in line)
    commit = next(i for i in range(start, len(lines)) if lines[i].startswith("F") and '"COMMIT"' in lines[i])
    waits = [line for line in lines[start:commit] if "\tReadyForQuery\t" in line]
    statements = [line for line in lines[start:commit] if "\tParse\t" in line or "\tQuery\t" in line]
    assert len(statements) >= 3, statements  # the column, the fill function and its trigger, ...
    assert len(waits) == 1, "\n".join(lines[start:commit])
