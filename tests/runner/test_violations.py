"""A constraint that rows already in the table violate: the server says only "violated by some row".
pgshift names a few of them, counts them up to a cap, and prints the query listing them all; the
query it prints finds exactly those rows, and fixing them as it shows lets the rerun succeed."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgshift.runner import violations
from pgshift.runner.violations import find_violators
from tests.helpers import run_pgshift, start_pgshift, write_migration
from tests.ops.helpers import write_project

Conn = psycopg.Connection[Any]


def _said(result: Any) -> str:
    return " ".join(result.stderr.split())


def _migrate(project: Path, db_url: str, sqlstate: str | None = None) -> str:
    """`pgshift migrate` in ``project``: its stderr as one line, after checking it failed with ``sqlstate``
    (exit 8), or succeeded when none is given."""
    result = run_pgshift(["migrate", "--no-backup"], cwd=project, url=db_url)
    message = _said(result)
    if sqlstate is None:
        assert result.returncode == 0, message
    else:
        assert result.returncode == 8 and f"SQLSTATE {sqlstate}" in message, message
    return message


def _found_after(db_url: str, statement: str, error: type[psycopg.Error]) -> violations.Violators | None:
    """What find_violators says after ``statement`` fails with ``error`` in a session of its own."""
    with psycopg.connect(db_url, autocommit=True) as session:
        with pytest.raises(error) as failed:
            session.execute(statement)
        return find_violators(session, failed.value, statement)


def _listing_query(message: str) -> str:
    found = re.search(r"List them with: (SELECT .*?;)", message)
    assert found, message
    return found.group(1)


def test_a_check_validated_in_the_same_migration_names_rows_and_its_query_finds_them(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    conn.execute('CREATE TABLE "Order Items" (id bigint PRIMARY KEY, qty int);'
                 'INSERT INTO "Order Items" SELECT g, CASE WHEN g IN (7, 19, 40, 41) THEN -g ELSE g END '
                 "FROM generate_series(1, 500) g")
    write_migration(tmp_path / "migrations", "1", "qty",
                    'ALTER TABLE "Order Items" ADD CONSTRAINT "Qty positive" CHECK (qty > 0) NOT VALID;\n'
                    'ALTER TABLE "Order Items" VALIDATE CONSTRAINT "Qty positive";')
    message = _migrate(tmp_path, db_url, "23514")
    assert ('Hint: 4 rows violate Qty positive in "public"."Order Items", e.g. id = 7; id = 19; id = 40. '
            "List them with:") in message, message
    rows = conn.execute(_listing_query(message)).fetchall()
    assert sorted(r[0] for r in rows) == [7, 19, 40, 41]
    # What the hint says to do works: correct those rows, run migrate again.
    conn.execute('UPDATE "Order Items" SET qty = -qty WHERE qty <= 0')
    _migrate(tmp_path, db_url)


def test_set_not_null_on_a_table_without_a_key_names_rows_by_ctid(tmp_path: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE notes (a int, b text); INSERT INTO notes VALUES (1, NULL), (2, 'x'), (3, NULL)")
    write_migration(tmp_path / "migrations", "1", "b_required", "ALTER TABLE notes ALTER COLUMN b SET NOT NULL;",
                    directives=("no-transaction",))
    message = _migrate(tmp_path, db_url, "23502")
    assert ('Hint: 2 rows violate NOT NULL on b in "public"."notes", e.g. ctid = (0,1); ctid = (0,3). '
            'List them with: SELECT * FROM "public"."notes" WHERE "b" IS NULL;') in message, message
    assert sorted(r[0] for r in conn.execute(_listing_query(message)).fetchall()) == [1, 3]


def test_an_unnamed_check_added_and_validated_at_once_is_found_in_the_statement(tmp_path: Path, db_url: str,
                                                                                conn: Conn) -> None:
    conn.execute("CREATE TABLE t (id int PRIMARY KEY, a int); INSERT INTO t SELECT g, g - 1100 FROM "
                 "generate_series(1, 2000) g")
    write_migration(tmp_path / "migrations", "1", "a_positive", "ALTER TABLE t ADD CHECK (a > 0);")
    message = _migrate(tmp_path, db_url, "23514")
    # 1,100 violate: counted up to the cap, not further.
    assert 'Hint: more than 1,000 rows violate t_a_check in "public"."t", e.g. id = 1; id = 2; id = 3.' in message
    assert _listing_query(message) == 'SELECT * FROM "public"."t" WHERE NOT (a > 0);'


@pytest.mark.parametrize(("setup", "up", "constraint"), [
    # The column is gone with the rollback: its rows cannot be looked for.
    ("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)",
     "ALTER TABLE t ADD COLUMN c int DEFAULT -1 CHECK (c > 0);", "t_c_check"),
    # The rows violate it only as the statement rewrites them: none does now.
    ("CREATE TABLE t (id int PRIMARY KEY, a int CHECK (a > 0)); INSERT INTO t VALUES (1, 5)",
     "ALTER TABLE t ALTER COLUMN a TYPE bigint USING a - 10;", "t_a_check"),
], ids=["column-added", "rows-rewritten"])
def test_rows_that_cannot_be_found_now_keep_the_plain_hint(tmp_path: Path, db_url: str, conn: Conn, setup: str,
                                                          up: str, constraint: str) -> None:
    conn.execute(setup)
    write_migration(tmp_path / "migrations", "1", "c", up)
    message = _migrate(tmp_path, db_url, "23514")
    assert f"Hint: rows of t violate {constraint}: a rerun fails" in message, message
    assert "List them with" not in message and "Detail" not in message, message


def test_an_operation_failing_its_validation_names_the_rows_then_the_next_move(tmp_path: Path, db_url: str,
                                                                              conn: Conn) -> None:
    project = write_project(tmp_path, {
        "001_init.sql": "-- pgshift:up\nCREATE TABLE pets (id int PRIMARY KEY, name text);\n"
                        "INSERT INTO pets VALUES (1, 'a'), (2, NULL);\n",
        "002_nn.ops.yaml": "operations:\n  - set_not_null: {table: pets, column: name}\n"})
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    result = run_pgshift(["contract"], cwd=project, url=db_url)
    message = _said(result)
    assert result.returncode == 8, message
    assert 'Hint: 1 row violates _pgshift_nn_pets_name in "public"."pets", e.g. id = 2. List them with:' in message
    assert [r[0] for r in conn.execute(_listing_query(message)).fetchall()] == [2]
    assert "Then nothing of the contract was kept" in message, message


def test_a_lookup_past_its_time_limit_still_gives_the_query(db_url: str, conn: Conn,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    conn.execute("CREATE TABLE slow (id int PRIMARY KEY, a int); INSERT INTO slow SELECT g, -g FROM "
                 "generate_series(1, 50) g")
    conn.execute("ALTER TABLE slow ADD CONSTRAINT a_slow CHECK (pg_sleep(0.01) IS NOT NULL AND a > 0) NOT VALID")
    monkeypatch.setattr(violations, "LOOKUP_TIMEOUT_MS", 100)
    statement = "ALTER TABLE slow VALIDATE CONSTRAINT a_slow"
    found = _found_after(db_url, statement, psycopg.errors.CheckViolation)
    assert found is not None and found.count is None and found.examples == ()
    assert found.sentence().startswith('rows of "public"."slow" violate a_slow (looking for them took over 0.1 s)')
    assert found.query == 'SELECT * FROM "public"."slow" WHERE NOT (((pg_sleep((0.01)::double precision) IS NOT ' \
                          'NULL) AND (a > 0)));'


def test_nothing_is_looked_for_in_a_session_that_is_not_idle(db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE t (id int PRIMARY KEY, a int); INSERT INTO t VALUES (1, -1)")
    conn.execute("ALTER TABLE t ADD CONSTRAINT a_positive CHECK (a > 0) NOT VALID")
    statement = "ALTER TABLE t VALIDATE CONSTRAINT a_positive"
    with psycopg.connect(db_url) as session:  # not autocommit: the error leaves its transaction failed
        with pytest.raises(psycopg.errors.CheckViolation) as failed:
            session.execute(statement)
        assert find_violators(session, failed.value, statement) is None
        session.rollback()
        found = find_violators(session, failed.value, statement)
    assert found is not None and found.count == 1 and found.examples == ("id = 1",)


def test_a_unique_index_on_duplicated_values_names_them_and_its_query_lists_them(tmp_path: Path, db_url: str,
                                                                                 conn: Conn) -> None:
    conn.execute("CREATE TABLE users (id int PRIMARY KEY, email text, active bool);"
                 "INSERT INTO users VALUES (1, 'a@x', true), (2, 'A@x', true), (3, 'b@x', true), (4, 'B@X', true),"
                 "(5, 'b@x', true), (6, 'c@x', false), (7, 'C@x', false), (8, NULL, true), (9, NULL, true), "
                 "(10, 'd@x', true)")
    # Partial and on an expression: rows outside the WHERE, and null keys, never conflict.
    write_migration(tmp_path / "migrations", "1", "unique_email",
                    "CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (lower(email)) WHERE active;",
                    directives=("no-transaction",))
    message = _migrate(tmp_path, db_url, "23505")
    assert ('Hint: 2 values of lower(email) are duplicated in "public"."users", stopping users_email_key, e.g. '
            "lower(email) = ") in message, message
    assert "lower(email) = a@x (2 rows)" in message and "lower(email) = b@x (3 rows)" in message, message
    listed = conn.execute(_listing_query(message)).fetchall()
    assert sorted(listed) == [("a@x", 2), ("b@x", 3)]
    assert conn.execute("SELECT count(*) FROM pg_index WHERE indexrelid::regclass::text = 'users_email_key'"
                        ).fetchone() == (0,)  # the INVALID index the failed build left was dropped
    conn.execute("UPDATE users SET active = false WHERE id IN (2, 4, 5)")
    _migrate(tmp_path, db_url)


def test_a_long_key_value_is_shortened_in_the_message(db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE notes (body text);"
                 "INSERT INTO notes SELECT repeat('x', 5000) FROM generate_series(1, 2)")
    found = _found_after(db_url, "CREATE UNIQUE INDEX notes_body ON notes (body)", psycopg.errors.UniqueViolation)
    assert found is not None and found.examples == (f"body = {'x' * 57}... (2 rows)",), found


def test_a_primary_key_on_duplicated_pairs_counts_them(tmp_path: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE pairs (a int NOT NULL, b int NOT NULL);"
                 "INSERT INTO pairs SELECT g % 3, g % 2 FROM generate_series(1, 12) g")
    write_migration(tmp_path / "migrations", "1", "pk", "ALTER TABLE pairs ADD PRIMARY KEY (a, b);")
    message = _migrate(tmp_path, db_url, "23505")
    assert ('Hint: 6 values of (a, b) are duplicated in "public"."pairs", stopping pairs_pkey, e.g. (a, b) = '
            ) in message, message
    assert _listing_query(message) == ('SELECT "a", "b", count(*) FROM "public"."pairs" GROUP BY 1, 2 '
                                       "HAVING count(*) > 1;")
    assert len(conn.execute(_listing_query(message)).fetchall()) == 6


def test_a_duplicate_inserted_by_the_migration_itself_names_nothing_more(tmp_path: Path, db_url: str,
                                                                         conn: Conn) -> None:
    conn.execute("CREATE TABLE tags (name text PRIMARY KEY); INSERT INTO tags VALUES ('a')")
    write_migration(tmp_path / "migrations", "1", "tags", "INSERT INTO tags VALUES ('a');")
    message = _migrate(tmp_path, db_url, "23505")
    assert "Key (name)=(a) already exists" in message, message
    assert "List them with" not in message, message


def test_ctrl_c_while_looking_skips_the_lookup_and_still_records_the_failure(tmp_path: Path, db_url: str,
                                                                             conn: Conn) -> None:
    """The lookup reads the table again (here 1,500 rows at 10 ms each). Ctrl-C meanwhile ends it on the
    server and the command reports the failure it had, recorded in history, without the rows."""
    conn.execute("CREATE TABLE slow (id int PRIMARY KEY, a int); INSERT INTO slow SELECT g, g FROM "
                 "generate_series(1, 1500) g")
    conn.execute("ALTER TABLE slow ADD CONSTRAINT a_slow CHECK (pg_sleep(0.01) IS NOT NULL AND a > 1) NOT VALID")
    write_migration(tmp_path / "migrations", "1", "validate", "ALTER TABLE slow VALIDATE CONSTRAINT a_slow;")
    proc = start_pgshift(["migrate", "--no-backup"], cwd=tmp_path, url=db_url)
    deadline = time.monotonic() + 30
    while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%count(*) OVER ()%%' "
                       "AND pid <> pg_backend_pid()").fetchone() != (1,):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    message = " ".join(err.split())
    assert proc.returncode == 8, message
    assert "· looking for the rows of slow that stop a_slow (at most 30 s; Ctrl-C skips it)" in message, message
    assert "Hint: rows of slow violate a_slow" in message and "List them with" not in message, message
    assert conn.execute("SELECT status FROM pgshift.migrations WHERE version = '1'").fetchone() == ("failed",)
    assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%count(*) OVER ()%%' AND "
                        "state = 'active' AND pid <> pg_backend_pid()").fetchone() == (0,)


def test_a_foreign_key_names_the_rows_whose_key_the_referenced_table_lacks(tmp_path: Path, db_url: str,
                                                                           conn: Conn) -> None:
    """MATCH SIMPLE: a key with a null part is not checked. The constraint was added NOT VALID by an applied
    migration, so the one that validates it reads it from the catalog."""
    conn.execute('CREATE TABLE owners (owner_no int PRIMARY KEY); INSERT INTO owners VALUES (1);'
                 'CREATE TABLE "Pets" (id int PRIMARY KEY, owner_id int);'
                 'INSERT INTO "Pets" VALUES (1, 1), (2, 42), (3, NULL), (4, 7)')
    folder = tmp_path / "migrations"
    write_migration(folder, "1", "fk", 'ALTER TABLE "Pets" ADD CONSTRAINT pets_owner_fk FOREIGN KEY (owner_id) '
                    "REFERENCES owners NOT VALID;")
    _migrate(tmp_path, db_url)
    write_migration(folder, "2", "validate", 'ALTER TABLE "Pets" VALIDATE CONSTRAINT pets_owner_fk;')
    message = _migrate(tmp_path, db_url, "23503")
    assert 'Hint: 2 rows violate pets_owner_fk in "public"."Pets", e.g. id = 2; id = 4.' in message, message
    assert sorted(r[0] for r in conn.execute(_listing_query(message)).fetchall()) == [2, 4]
    conn.execute("INSERT INTO owners VALUES (7), (42)")
    _migrate(tmp_path, db_url)


def test_a_match_full_foreign_key_also_names_keys_with_some_parts_null(db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE parents (a int, b int, UNIQUE (a, b)); INSERT INTO parents VALUES (1, 1);"
                 "CREATE TABLE kids (id int PRIMARY KEY, a int, b int);"
                 "INSERT INTO kids VALUES (1, 1, 1), (2, 1, NULL), (3, NULL, NULL), (4, 2, 2)")
    statement = "ALTER TABLE kids ADD CONSTRAINT kids_fk FOREIGN KEY (a, b) REFERENCES parents (a, b) MATCH FULL"
    found = _found_after(db_url, statement, psycopg.errors.ForeignKeyViolation)
    assert found is not None and found.count == 2 and found.examples == ("id = 2", "id = 4"), found
    assert sorted(r[0] for r in conn.execute(found.query).fetchall()) == [2, 4]


def test_a_foreign_key_without_a_column_list_references_the_primary_key(db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE owners (owner_no int PRIMARY KEY); INSERT INTO owners VALUES (1);"
                 "CREATE TABLE pets (id int PRIMARY KEY, owner_id int); INSERT INTO pets VALUES (1, 1), (2, 3)")
    statement = "ALTER TABLE pets ADD FOREIGN KEY (owner_id) REFERENCES owners"
    found = _found_after(db_url, statement, psycopg.errors.ForeignKeyViolation)
    assert found is not None and (found.constraint, found.examples) == ("pets_owner_id_fkey", ("id = 2",)), found


def test_a_not_null_column_added_without_a_default_to_a_table_with_rows_says_how_to_add_it(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE pets (id int PRIMARY KEY); INSERT INTO pets VALUES (1), (2)")
    path = write_migration(tmp_path / "migrations", "1", "name", "ALTER TABLE pets ADD COLUMN name text NOT NULL;")
    result = run_pgshift(["migrate", "--no-backup", "--no-lint"], cwd=tmp_path, url=db_url)
    message = _said(result)
    assert result.returncode == 8 and "SQLSTATE 23502" in message, message
    assert ("Hint: pets already has rows, and a new NOT NULL column without a DEFAULT would be null in each: give "
            "name a DEFAULT") in message, message
    # What it says works: with a DEFAULT the same column is added.
    path.write_text(path.read_text().replace("text NOT NULL", "text NOT NULL DEFAULT ''"))
    assert run_pgshift(["migrate", "--no-backup", "--no-lint"], cwd=tmp_path, url=db_url).returncode == 0
    assert conn.execute("SELECT count(*) FROM pets WHERE name = ''").fetchone() == (2,)
