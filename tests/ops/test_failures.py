"""Failed phases on a real server: the message carries the server's DETAIL and HINT, nothing a failed
step created is left behind unannounced, and the command the message suggests actually works."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgshift import api
from pgshift.errors import LockTimeoutExhausted, MigrationFailed
from pgshift.ops import service
from pgshift.units import Duration
from tests.helpers import run_pgshift
from tests.ops.helpers import make_project, write_project

Conn = psycopg.Connection[Any]


def _said(result: Any) -> str:
    return " ".join(result.stderr.split())


def _suggested(message: str) -> list[str]:
    """The pgshift commands a failure message tells the user to run, in order."""
    return re.findall(r"`pgshift (\w+)`", message)


FK_INIT = """-- pgshift:up
CREATE TABLE owners (id int PRIMARY KEY);
CREATE TABLE pets (id int PRIMARY KEY, owner_id int);
INSERT INTO owners VALUES (1);
INSERT INTO pets VALUES (1, 1), (2, 42);
"""
FK_OPS = """lock_timeout: 50ms
operations:
  - add_foreign_key: {table: pets, name: pets_owner_fk, columns: [owner_id], references_table: owners,
                      references_columns: [id]}
"""


def _fk(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 'pets'::regclass "
                        "AND contype = 'f'").fetchall()


def test_a_contract_failing_validation_can_be_aborted_as_its_message_says(tmp_path: Path, db_url: str,
                                                                          conn: Conn) -> None:
    project = write_project(tmp_path, {"001_init.sql": FK_INIT, "002_fk.ops.yaml": FK_OPS})
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0  # NOT VALID: orphans allowed
    result = run_pgshift(["contract"], cwd=project, url=db_url)
    message = _said(result)
    assert result.returncode == 8, message
    assert "abort" in _suggested(message)
    aborted = run_pgshift(["abort"], cwd=project, url=db_url)  # the hint works
    assert aborted.returncode == 0, _said(aborted)
    assert _fk(conn) == []
    # The server's DETAIL names the orphan value; without it the user cannot find the row.
    assert "violates foreign key constraint" in message and "Key (owner_id)=(42) is not present" in message
    assert "still expanded" in message and _suggested(message) == ["contract", "abort"]
    # And the other suggestion: fix the data, expand again, contract again.
    conn.execute("DELETE FROM pets WHERE owner_id = 42")
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    contracted = run_pgshift(["contract"], cwd=project, url=db_url)
    assert contracted.returncode == 0, _said(contracted)
    assert _fk(conn) == [("pets_owner_fk", True)]


def test_a_contract_failing_validation_can_be_rerun_after_fixing_the_data(tmp_path: Path, db_url: str,
                                                                          conn: Conn) -> None:
    project = write_project(tmp_path, {"001_init.sql": FK_INIT, "002_fk.ops.yaml": FK_OPS})
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    assert run_pgshift(["contract"], cwd=project, url=db_url).returncode == 8
    conn.execute("INSERT INTO owners VALUES (42)")
    contracted = run_pgshift(["contract"], cwd=project, url=db_url)
    assert contracted.returncode == 0, _said(contracted)
    assert _fk(conn) == [("pets_owner_fk", True)]


def test_a_contract_that_crashed_within_its_validations_can_still_be_aborted(tmp_path: Path, db_url: str,
                                                                             conn: Conn) -> None:
    """A crash leaves 'contracting' on record; nothing destructive ran, so abort must still work."""
    project = write_project(tmp_path, {"001_init.sql": FK_INIT, "002_fk.ops.yaml": FK_OPS})
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    conn.execute("UPDATE pgshift.ops_state SET phase = 'contracting', steps_done = 0 WHERE version = '002'")
    aborted = run_pgshift(["abort"], cwd=project, url=db_url)
    assert aborted.returncode == 0, _said(aborted)
    assert _fk(conn) == []


UNIQUE_INIT = """-- pgshift:up
CREATE TABLE users (id int PRIMARY KEY, email text);
INSERT INTO users VALUES (1, 'a@x'), (2, 'dup@x'), (3, 'dup@x');
"""
UNIQUE_OPS = "operations:\n  - add_unique: {table: users, name: users_email_key, columns: [email]}\n"


def test_a_failed_unique_build_leaves_no_invalid_index_and_names_the_duplicate(tmp_path: Path, db_url: str,
                                                                              conn: Conn) -> None:
    project = write_project(tmp_path, {"001_init.sql": UNIQUE_INIT, "002_unique.ops.yaml": UNIQUE_OPS})
    result = run_pgshift(["migrate"], cwd=project, url=db_url)
    message = _said(result)
    assert result.returncode == 8, message
    assert conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'users_email_key'").fetchone() == (0,)
    assert "INVALID index the failed build left was dropped" in message
    assert "could not create unique index" in message and "Key (email)=(dup@x) is duplicated" in message
    assert _suggested(message) == ["migrate", "abort"]
    aborted = run_pgshift(["abort"], cwd=project, url=db_url)
    assert aborted.returncode == 0, _said(aborted)
    conn.execute("UPDATE users SET email = 'b@x' WHERE id = 3")
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    assert run_pgshift(["contract"], cwd=project, url=db_url).returncode == 0
    assert conn.execute("SELECT contype FROM pg_constraint WHERE conname = 'users_email_key'").fetchone() == ("u",)


def test_a_failed_expand_step_resumes_with_the_suggested_migrate(tmp_path: Path, db_url: str, conn: Conn) -> None:
    project = write_project(tmp_path, {"001_init.sql": UNIQUE_INIT, "002_unique.ops.yaml": UNIQUE_OPS})
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 8
    conn.execute("UPDATE users SET email = 'b@x' WHERE id = 3")
    again = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert again.returncode == 0, _said(again)
    assert conn.execute("SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = 'users_email_key'::regclass"
                        ).fetchone() == (True,)


def test_a_failing_backfill_names_the_row_and_can_be_aborted(tmp_path: Path, db_url: str, conn: Conn) -> None:
    init = ("-- pgshift:up\nCREATE TABLE t (id int PRIMARY KEY, qty int);\n"
            "INSERT INTO t SELECT g, g FROM generate_series(1, 50) g;\n")
    ops = ("operations:\n  - add_column:\n      table: t\n      column: {name: qty2, type: int, nullable: false}\n"
           "      up: \"CASE WHEN qty = 7 THEN NULL ELSE qty * 2 END\"\n")
    project = write_project(tmp_path, {"001_init.sql": init, "002_qty2.ops.yaml": ops})
    result = run_pgshift(["migrate"], cwd=project, url=db_url)
    message = _said(result)
    assert result.returncode == 8, message
    assert "violates check constraint" in message and "Detail: Failing row contains (7, 7, null)" in message
    assert _suggested(message) == ["migrate", "abort"]
    aborted = run_pgshift(["abort"], cwd=project, url=db_url)
    assert aborted.returncode == 0, _said(aborted)
    assert conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'qty2' "
                        "AND NOT attisdropped").fetchone() == (0,)


def test_pgshift_backfill_stopped_by_a_constraint_names_the_row(tmp_path: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE t (id int PRIMARY KEY, qty int, CONSTRAINT t_qty_check CHECK (id <> 7 OR qty < 10))")
    conn.execute("INSERT INTO t SELECT g, g FROM generate_series(1, 50) g")
    (tmp_path / "migrations").mkdir()
    result = run_pgshift(["backfill", "--table", "public.t", "--set", "qty = qty * 2", "--quiet"], cwd=tmp_path,
                         url=db_url)
    message = _said(result)
    assert result.returncode == 21 and "error (backfill-failed)" in message, message
    assert "violates check constraint" in message and "Detail: Failing row contains (7, 14)" in message
    conn.execute("ALTER TABLE t DROP CONSTRAINT t_qty_check")
    again = run_pgshift(["backfill", "--table", "public.t", "--set", "qty = qty * 2", "--quiet"], cwd=tmp_path,
                        url=db_url)  # the hint: rerun the same command to resume
    assert again.returncode == 0, _said(again)
    assert conn.execute("SELECT count(*) FROM t WHERE qty = id * 2").fetchone() == (50,)


def test_a_contract_failing_after_dropping_a_column_says_to_finish_it_and_abort_refuses(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    init = "-- pgshift:up\nCREATE TABLE t (id int PRIMARY KEY, qty int, note text);\nCREATE TABLE gate (ok int);\n"
    ops = """operations:
  - add_check: {table: t, name: qty_positive, check: "qty > 0"}
  - drop_column: {table: t, column: note}
  - sql: {up: "SELECT 1", down: "SELECT 1", contract: "SELECT 1 / (SELECT count(*) FROM gate)"}
"""
    project = write_project(tmp_path, {"001_init.sql": init, "002_ops.ops.yaml": ops})
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    result = run_pgshift(["contract"], cwd=project, url=db_url)
    message = _said(result)
    assert result.returncode == 8, message
    assert "division by zero" in message and _suggested(message) == ["contract"], message
    refused = run_pgshift(["abort"], cwd=project, url=db_url)  # note is gone: abort cannot bring it back
    assert refused.returncode == 22 and _suggested(_said(refused)) == ["contract"], _said(refused)
    assert "after steps that abort cannot undo" in _said(refused)
    conn.execute("INSERT INTO gate VALUES (1)")
    finished = run_pgshift(["contract"], cwd=project, url=db_url)
    assert finished.returncode == 0, _said(finished)
    assert conn.execute("SELECT convalidated FROM pg_constraint WHERE conname = 'qty_positive'").fetchone() == (True,)


def test_a_contract_stopped_at_its_first_destructive_step_is_still_expanded_and_can_be_aborted(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    """That step is a transaction that never committed: nothing abort cannot undo has happened yet."""
    init = "CREATE TABLE t (id int PRIMARY KEY, qty int, note text);"
    settings = make_project(tmp_path, db_url, {"001_init.sql": init})
    api.migrate(settings)
    (tmp_path / "migrations" / "002_ops.ops.yaml").write_text(
        "lock_timeout: 50ms\nlock_retries: 1\noperations:\n"
        "  - add_check: {table: t, name: qty_positive, check: \"qty > 0\"}\n"
        "  - drop_column: {table: t, column: note}\n")
    api.migrate(settings)
    with psycopg.connect(db_url) as reader:
        reader.execute("SELECT * FROM t")  # held through the contract: its first strong lock cannot be taken
        with pytest.raises(LockTimeoutExhausted) as caught:
            service.contract(settings)
        reader.rollback()
    hint = caught.value.hint or ""
    assert "still expanded" in hint and _suggested(hint) == ["contract", "abort"], hint
    assert conn.execute("SELECT phase FROM pgshift.ops_state WHERE version = '002'").fetchone() == ("expanded",)
    service.abort(settings)  # as the hint says
    assert conn.execute("SELECT convalidated FROM pg_constraint WHERE conname = 'qty_positive'").fetchall() == []


def test_a_failing_steps_long_statement_is_quoted_to_300_characters(tmp_path: Path, db_url: str,
                                                                    conn: Conn) -> None:
    settings = make_project(tmp_path, db_url, {"001_init.sql": "CREATE TABLE t (id int);"})
    api.migrate(settings)
    statement = f"SELECT 1 / (0 * length('{'x' * 400}'))"
    (tmp_path / "migrations" / "002_long.ops.yaml").write_text(
        f'operations:\n  - sql: {{up: "{statement}", down: "SELECT 1"}}\n')
    with pytest.raises(MigrationFailed, match="division by zero") as caught:
        api.migrate(settings)
    assert f"Statement: {statement[:300]}. The step was rolled back." in caught.value.message, caught.value.message


def test_a_failed_autocommit_step_that_builds_no_index_says_it_was_rolled_back(tmp_path: Path, db_url: str,
                                                                               conn: Conn) -> None:
    settings = make_project(tmp_path, db_url, {"001_init.sql": "CREATE TYPE status AS ENUM ('new', 'paid');"})
    api.migrate(settings)
    (tmp_path / "migrations" / "002_enum.ops.yaml").write_text(
        "operations:\n  - add_enum_value: {type: status, value: refunded, after: shipped}\n")
    with pytest.raises(MigrationFailed, match='"shipped" is not an existing enum label') as caught:
        api.migrate(settings)
    assert caught.value.message.endswith("The step was rolled back."), caught.value.message
    assert "INVALID index" not in caught.value.message


def test_a_contract_stopped_in_a_concurrent_drop_at_that_step_can_no_longer_be_aborted(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    """Unlike a transaction, a DROP INDEX CONCURRENTLY that stopped may have half-run: the contract must be finished."""
    init = "CREATE TABLE t (id int PRIMARY KEY, qty int); CREATE INDEX t_qty_old ON t (qty);"
    settings = make_project(tmp_path, db_url, {"001_init.sql": init})
    api.migrate(settings)
    (tmp_path / "migrations" / "002_ops.ops.yaml").write_text(
        "lock_timeout: 50ms\nlock_retries: 1\noperations:\n"
        "  - add_check: {table: t, name: qty_positive, check: \"qty > 0\"}\n"
        "  - drop_index: {name: t_qty_old}\n")
    api.migrate(settings)
    with psycopg.connect(db_url) as reader:
        reader.execute("SELECT * FROM t")  # DROP INDEX CONCURRENTLY waits for this transaction
        with pytest.raises(LockTimeoutExhausted) as caught:
            service.contract(settings)
        reader.rollback()
    hint = caught.value.hint or ""
    assert "abort is no longer possible" in hint and _suggested(hint) == ["contract"], hint
    assert conn.execute("SELECT phase FROM pgshift.ops_state WHERE version = '002'").fetchone() == ("contracting",)
    service.contract(settings)  # as the hint says
    assert conn.execute("SELECT to_regclass('t_qty_old')").fetchone() == (None,)


def test_a_step_sent_in_one_pipeline_names_the_statement_that_failed_and_rolls_all_back(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    """The column is added by the step's first statement; its default, the second, fails: the message
    names that one (the step's statements go out together, so the failing reply is found by its place)."""
    conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, qty int); INSERT INTO items VALUES (1, 1)")
    settings = make_project(tmp_path, db_url, {"001_ops.ops.yaml": (
        "operations:\n  - add_column:\n      table: items\n"
        "      column: {name: note, type: int, default: \"'abc'\", nullable: false}\n      up: qty\n")})
    with pytest.raises(MigrationFailed) as failed:
        api.migrate(settings)
    message = str(failed.value)
    assert 'Statement: ALTER TABLE "public"."items" ALTER COLUMN "note" SET DEFAULT \'abc\'' in message, message
    assert 'invalid input syntax for type integer: "abc"' in message and "rolled back" in message
    assert conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'items'::regclass AND attname = 'note'"
                        ).fetchone() == (0,)


SLOW_CHECK_INIT = """-- pgshift:up
CREATE TABLE t (id int PRIMARY KEY, qty int);
INSERT INTO t VALUES (1, 1), (2, 2), (3, 3);
CREATE FUNCTION slow_positive(q int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS
  $$ BEGIN PERFORM pg_sleep(0.2); RETURN q > 0; END $$;
"""
SLOW_CHECK_OPS = 'operations:\n  - add_check: {table: t, name: qty_positive, check: "slow_positive(qty)"}\n'


def test_a_validation_past_the_statement_timeout_is_a_failed_step_not_a_lost_connection(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    """A statement cancelled by statement_timeout (57014) is an OperationalError, as a lost session's error is,
    but the session lives: the contract reports its step failed and how to go on, not a lost connection."""
    settings = make_project(tmp_path, db_url, {
        "001_init.sql": SLOW_CHECK_INIT,
        "002_check.ops.yaml": SLOW_CHECK_OPS})
    api.migrate(settings)  # NOT VALID: no row checked yet
    settings = dataclasses.replace(settings, statement_timeout=Duration.parse("250ms"))  # 3 rows take 600 ms
    with pytest.raises(MigrationFailed) as info:  # not ConnectionFailed (exit 4), which is no MigrationFailed
        service.contract(settings)
    message = str(info.value)
    assert "step 'validate" in message and "canceling statement due to statement timeout" in message, message
    assert "still expanded" in message and _suggested(message) == ["contract", "abort"], message
    assert conn.execute("SELECT phase FROM pgshift.ops_state").fetchone() == ("expanded",)


@pytest.mark.parametrize(("name", "text", "where", "problem"), [
    ("1_bad.ops.yaml", 'operations:\n  - create_index: {table: t, name: "Idx ""Q""", columns: [id]}\n', ":2:42:",
     "not valid YAML: expected ',' or '}', but got '<scalar>' (while parsing a flow mapping)."),
    ("1_bad.ops.json", '{"operations": [\n  {"create_index": {"table": "t",}}\n]}\n', ":2:34:",
     "not valid JSON: Expecting property name enclosed in double quotes."),
])
def test_an_operations_file_that_does_not_parse_is_named_with_its_line_in_one_paragraph(
        tmp_path: Path, db_url: str, name: str, text: str, where: str, problem: str) -> None:
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / name).write_text(text)
    done = run_pgshift(["status"], cwd=tmp_path, url=db_url)
    assert done.returncode == 6, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error == f"error (source): {tmp_path / 'migrations' / name}{where} {problem}", done.stderr
