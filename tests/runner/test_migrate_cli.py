"""The runner end to end through the real CLI on a real server."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PgServer
from tests.helpers import run_pgshift, write_migration

Conn = psycopg.Connection[tuple[object, ...]]


def _tables(conn: Conn) -> set[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {str(r[0]) for r in rows}


def _status_rows(conn: Conn) -> dict[str, tuple[object, ...]]:
    rows = conn.execute("SELECT version, status, statements_done, direction FROM pgshift.migrations").fetchall()
    return {str(r[0]): r[1:] for r in rows}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "migrations").mkdir()
    return tmp_path


def test_migrate_status_rollback_and_reapply(project: Path, db_url: str, conn: Conn) -> None:
    mig = project / "migrations"
    write_migration(mig, "1", "users", "CREATE TABLE users (id bigint PRIMARY KEY, email text);", "DROP TABLE users;")
    write_migration(mig, "2", "trades", "CREATE TABLE trades (id bigint PRIMARY KEY);", "DROP TABLE trades;")

    status = run_pgshift(["status", "--json", "--exit-code"], cwd=project, url=db_url)
    assert status.returncode == 1, status.stderr
    assert json.loads(status.stdout)["pending"] == ["1", "2"]

    applied = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert applied.returncode == 0, applied.stderr
    assert _tables(conn) == {"users", "trades"}
    assert run_pgshift(["status", "--exit-code"], cwd=project, url=db_url).returncode == 0

    back = run_pgshift(["rollback"], cwd=project, url=db_url)
    assert back.returncode == 0, back.stderr
    assert _tables(conn) == {"users"}
    assert _status_rows(conn)["2"][0] == "rolled_back"

    again = run_pgshift(["migrate", "--json"], cwd=project, url=db_url)
    assert [a["version"] for a in json.loads(again.stdout)["applied"]] == ["2"]
    history = run_pgshift(["history", "--json"], cwd=project, url=db_url)
    events = [e["event"] for e in json.loads(history.stdout)["events"]]
    assert events.count("applied") == 3 and events.count("rolled-back") == 1


def test_failing_statement_rolls_back_and_reports_file_line(
    project: Path, db_url: str, conn: Conn
) -> None:
    path = write_migration(project / "migrations", "1", "broken",
                           "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\nSELECT *\n  FROM missing_table;")
    result = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert result.returncode == 8
    assert f"{path}:5" in result.stderr  # the line of "FROM missing_table" in the file
    assert 'relation "missing_table" does not exist' in result.stderr
    assert "SQLSTATE 42P01" in result.stderr
    assert "a" not in _tables(conn)  # the whole migration's transaction rolled back
    status, done, _direction = _status_rows(conn)["1"]
    assert status == "failed" and done == 0


def test_a_constraint_existing_rows_violate_says_a_rerun_needs_the_data_fixed(project: Path, db_url: str,
                                                                               conn: Conn) -> None:
    conn.execute("CREATE TABLE users (id int); INSERT INTO users VALUES (1), (42)")
    write_migration(project / "migrations", "1", "small_ids",
                    "ALTER TABLE users ADD CONSTRAINT small_id CHECK (id < 10) NOT VALID;\n"
                    "ALTER TABLE users VALIDATE CONSTRAINT small_id;")
    result = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert result.returncode == 8 and "SQLSTATE 23514" in result.stderr, result.stderr
    assert ('Hint: 1 row violates small_id in "public"."users", e.g. ctid = (0,2). List them with: SELECT * FROM '
            '"public"."users" WHERE NOT (id < 10); a rerun fails the same way until those rows or the migration are '
            "corrected; then run `pgshift migrate` again.") in " ".join(result.stderr.split()), result.stderr
    status = run_pgshift(["status"], cwd=project, url=db_url)
    shown = " ".join(status.stdout.split())
    assert "history marks it failed.." not in shown and "Hint: 1 row violates small_id" in shown, shown
    conn.execute("DELETE FROM users WHERE id >= 10")  # the hint's fix works
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0


def test_server_hint_is_shown(project: Path, db_url: str) -> None:
    write_migration(project / "migrations", "1", "hint", "SELECT lenght('x');")
    result = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert result.returncode == 8
    assert "Hint: No function matches" in result.stderr


def test_dry_run_prints_sql_and_transaction_boundaries_and_changes_nothing(
    project: Path, db_url: str, conn: Conn
) -> None:
    write_migration(project / "migrations", "1", "t", "CREATE TABLE t (id int);")
    write_migration(project / "migrations", "2", "i", "CREATE INDEX CONCURRENTLY t_id ON t (id);")
    result = run_pgshift(["migrate", "--dry-run"], cwd=project, url=db_url)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "BEGIN;\nSET LOCAL lock_timeout = '2s';" in text
    assert "CREATE TABLE t (id int);\nCOMMIT;" in text
    assert "-- autocommit: CREATE INDEX CONCURRENTLY" in text
    assert _tables(conn) == set()
    schema = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'pgshift'").fetchone()
    assert schema == (0,)


def test_non_transactional_migration_resumes_at_failed_statement(
    project: Path, db_url: str, conn: Conn
) -> None:
    mig = project / "migrations"
    path = write_migration(mig, "1", "steps", "\n".join([
        "CREATE TABLE s (id int);",
        "CREATE INDEX CONCURRENTLY s_id ON s (id);",
        "INSERT INTO s SELECT * FROM not_yet_there;",
        "CREATE TABLE s2 (id int);",
    ]))
    first = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert first.returncode == 8
    assert "a rerun resumes at this statement" in first.stderr
    assert _status_rows(conn)["1"][:2] == ("failed", 2)
    conn.execute("CREATE TABLE not_yet_there (id int)")
    # Fixing a later statement keeps the progress of the ones already done.
    path.write_text(path.read_text().replace("SELECT * FROM not_yet_there", "SELECT id FROM not_yet_there"))
    second = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert second.returncode == 0, second.stderr
    assert "resuming 1 steps at statement 3 of 4" in second.stderr
    assert _tables(conn) >= {"s", "s2"}
    assert _status_rows(conn)["1"][:2] == ("applied", 4)


def test_invalid_concurrent_index_is_dropped(project: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE dup (v int); INSERT INTO dup VALUES (1), (1)")
    write_migration(project / "migrations", "1", "uniq", "CREATE UNIQUE INDEX CONCURRENTLY dup_v ON dup (v);")
    result = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert result.returncode == 8
    assert "could not create unique index" in result.stderr
    assert "dropping INVALID index public.dup_v" in result.stderr
    leftovers = conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone()
    assert leftovers == (0,)
    conn.execute("DELETE FROM dup WHERE ctid = (SELECT min(ctid) FROM dup)")
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    valid = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'dup_v'::regclass").fetchone()
    assert valid == (True,)


def test_an_index_build_that_times_out_waiting_for_an_old_snapshot_leaves_no_invalid_index(
    project: Path, db_url: str, conn: Conn
) -> None:
    """CREATE INDEX CONCURRENTLY waits for transactions with older snapshots after its catalog entry is
    committed; cancelled there by lock_timeout it leaves an INVALID index, which is dropped after every
    attempt, the last included, so nothing is left behind when the retries run out."""
    conn.execute("CREATE TABLE t (v int); INSERT INTO t SELECT generate_series(1, 100)")
    (project / "pgshift.toml").write_text('lock_timeout = "200ms"\nlock_retries = 1\n[backup]\npolicy = "never"\n')
    write_migration(project / "migrations", "1", "idx", "CREATE INDEX CONCURRENTLY t_v ON t (v);")
    with psycopg.connect(db_url) as old:
        old.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        old.execute("SELECT 1").fetchone()  # holds a snapshot older than the build's
        result = run_pgshift(["migrate"], cwd=project, url=db_url)
        assert result.returncode == 12, result.stderr
        assert conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone() == (0,), result.stderr
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_v'::regclass").fetchone() == (True,)


def test_resume_skips_a_concurrent_index_that_completed_before_a_crash(
    project: Path, db_url: str, conn: Conn
) -> None:
    write_migration(project / "migrations", "1", "idx",
                    "CREATE TABLE r (id int);\nCREATE INDEX CONCURRENTLY r_id ON r (id);\nCREATE TABLE r2 (id int);")
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    # The state a kill leaves between the index build finishing and its progress being recorded:
    conn.execute("DROP TABLE r2")
    conn.execute("UPDATE pgshift.migrations SET status = 'running', statements_done = 1, progress_checksum = "
                 "(SELECT progress_checksum FROM pgshift.migrations) WHERE version = '1'")
    from pgshift.migrations.formats.native import parse_file
    from pgshift.runner.execute import prefix_checksum

    migration = parse_file(project / "migrations" / "1_idx.sql", "1", "idx")
    conn.execute("UPDATE pgshift.migrations SET progress_checksum = %s", (prefix_checksum(migration.up[:1]),))
    rerun = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert rerun.returncode == 0, rerun.stderr
    assert "statement 2 had completed before the interruption; not rerun" in rerun.stderr
    assert "r2" in _tables(conn)


def test_rollback_refuses_without_down_part(project: Path, db_url: str, conn: Conn) -> None:
    write_migration(project / "migrations", "1", "a", "CREATE TABLE a (id int);", "DROP TABLE a;")
    write_migration(project / "migrations", "2", "b", "CREATE TABLE b (id int);")
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    result = run_pgshift(["rollback", "--steps", "2"], cwd=project, url=db_url)
    assert result.returncode == 11
    assert "2 b" in result.stderr and "has no down part" in result.stderr
    assert _tables(conn) == {"a", "b"}  # nothing was rolled back


def test_rollback_to_version(project: Path, db_url: str, conn: Conn) -> None:
    for v in ("1", "2", "3"):
        write_migration(project / "migrations", v, f"t{v}", f"CREATE TABLE t{v} (id int);", f"DROP TABLE t{v};")
    assert run_pgshift(["migrate", "--to", "2"], cwd=project, url=db_url).returncode == 0
    assert _tables(conn) == {"t1", "t2"}
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    assert run_pgshift(["rollback", "--to", "1"], cwd=project, url=db_url).returncode == 0
    assert _tables(conn) == {"t1"}


def test_edited_applied_file_is_refused_until_repaired(
    project: Path, db_url: str, conn: Conn
) -> None:
    path = write_migration(project / "migrations", "1", "a", "CREATE TABLE a (id int);")
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    path.write_text(path.read_text().replace("id int", "id bigint"))
    write_migration(project / "migrations", "2", "b", "CREATE TABLE b (id int);")

    validate = run_pgshift(["validate"], cwd=project, url=db_url)
    assert validate.returncode == 10
    assert "was changed after it was applied" in validate.stdout
    refused = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert refused.returncode == 10 and "Refusing to migrate" in refused.stderr
    assert "b" not in _tables(conn)

    repaired = run_pgshift(["migrate", "--repair"], cwd=project, url=db_url)
    assert repaired.returncode == 0, repaired.stderr
    assert "b" in _tables(conn)
    assert run_pgshift(["validate"], cwd=project, url=db_url).returncode == 0


def test_deleted_and_out_of_order_files_are_reported(
    project: Path, db_url: str, conn: Conn
) -> None:
    mig = project / "migrations"
    gone = write_migration(mig, "10", "a", "CREATE TABLE a (id int);")
    write_migration(mig, "20", "b", "CREATE TABLE b (id int);")
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    gone.unlink()
    write_migration(mig, "15", "late", "CREATE TABLE late (id int);")
    result = run_pgshift(["validate", "--json"], cwd=project, url=db_url)
    assert result.returncode == 10
    kinds = {(p["kind"], p["version"]) for p in json.loads(result.stdout)["problems"]}
    assert kinds == {("missing", "10"), ("out-of-order", "15")}


def test_out_of_order_needs_explicit_permission(project: Path, db_url: str, conn: Conn) -> None:
    mig = project / "migrations"
    write_migration(mig, "20", "b", "CREATE TABLE b (id int);")
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    write_migration(mig, "15", "late", "CREATE TABLE late (id int);")
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 10
    assert run_pgshift(["migrate", "--out-of-order"], cwd=project, url=db_url).returncode == 0
    assert "late" in _tables(conn)


def test_baseline_adopts_an_existing_database(project: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE legacy (id int)")
    mig = project / "migrations"
    write_migration(mig, "1", "legacy", "CREATE TABLE legacy (id int);")
    write_migration(mig, "2", "new", "CREATE TABLE fresh (id int);")
    result = run_pgshift(["baseline", "1"], cwd=project, url=db_url)
    assert result.returncode == 0, result.stderr
    applied = run_pgshift(["migrate", "--json"], cwd=project, url=db_url)
    assert [a["version"] for a in json.loads(applied.stdout)["applied"]] == ["2"]
    assert run_pgshift(["baseline", "1"], cwd=project, url=db_url).returncode == 10


def test_transaction_control_statements_in_files_are_skipped(
    project: Path, db_url: str, conn: Conn
) -> None:
    write_migration(project / "migrations", "1", "wrapped", "BEGIN;\nCREATE TABLE w (id int);\nCOMMIT;")
    assert run_pgshift(["migrate", "--no-lint"], cwd=project, url=db_url).returncode == 0
    assert "w" in _tables(conn)


def test_new_writes_a_timestamped_skeleton(project: Path) -> None:
    result = run_pgshift(["new", "Add users table"], cwd=project)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.parent == project / "migrations"
    assert path.name.endswith("_add_users_table.sql") and path.name[:14].isdigit()
    assert "-- pgshift:up" in path.read_text() and "-- pgshift:down" in path.read_text()


def test_init_creates_folder_config_and_ledger(tmp_path: Path, db_url: str, conn: Conn) -> None:
    result = run_pgshift(["init"], cwd=tmp_path, url=db_url)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "migrations").is_dir() and (tmp_path / "pgshift.toml").is_file()
    from pgshift.db.history import LEDGER_VERSION

    assert conn.execute("SELECT version FROM pgshift.ledger").fetchone() == (LEDGER_VERSION,)


def test_history_schema_is_configurable(project: Path, db_url: str, conn: Conn) -> None:
    (project / "pgshift.toml").write_text('history_schema = "deploys"\nlock_timeout = "500ms"\n')
    write_migration(project / "migrations", "1", "a", "CREATE TABLE a (id int);")
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    assert conn.execute("SELECT status FROM deploys.migrations").fetchone() == ("applied",)


def test_ledger_from_a_newer_pgshift_is_refused(project: Path, db_url: str, conn: Conn) -> None:
    write_migration(project / "migrations", "1", "a", "CREATE TABLE a (id int);")
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 0
    conn.execute("UPDATE pgshift.ledger SET version = 99")
    result = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert result.returncode != 0 and "written by a newer pgshift" in result.stderr


def test_wrong_password_is_a_clear_error_without_the_password(pg_server: PgServer, db_name: str, project: Path) -> None:
    if pg_server.cluster is None:
        pytest.skip("needs the embedded cluster's password-authenticated TCP listener")
    url = pg_server.tcp_url_for(db_name, password="s3cret-wrong")
    result = run_pgshift(["status"], cwd=project, url=url)
    assert result.returncode == 5
    assert "password authentication failed" in result.stderr
    assert "s3cret-wrong" not in result.stderr + result.stdout


def test_unreachable_server(project: Path) -> None:
    from pgshift.embedded import free_port

    url = f"postgresql://app:hunter2@127.0.0.1:{free_port()}/app?connect_timeout=3"
    result = run_pgshift(["status"], cwd=project, url=url)
    assert result.returncode == 4
    assert "Cannot connect to database app on 127.0.0.1" in result.stderr
    assert "hunter2" not in result.stderr


def test_missing_database_url(project: Path) -> None:
    result = run_pgshift(["status"], cwd=project)
    assert result.returncode == 3
    assert "DATABASE_URL" in result.stderr


@pytest.mark.parametrize(
    ("files", "code", "message"),
    [
        ({"1_bad.sql": "-- pgshift:up\nCREATE TABLE x (id int;\n"}, 7, "1_bad.sql:2:"),
        ({"1_dir.sql": "-- pgshift:up\n-- pgshift:frobnicate\nSELECT 1;\n"}, 6,
         "unknown directive 'pgshift:frobnicate'"),
        ({"1_empty.sql": ""}, 6, "is empty"),
        ({"1_a.sql": "SELECT 1;", "01_b.sql": "SELECT 2;"}, 6, "Two migrations have version"),
        ({"notes.sql": "SELECT 1;"}, 6, "is not named like a pgshift migration"),
    ],
)
def test_bad_migration_files_are_clear_errors_and_nothing_runs(
    project: Path, db_url: str, conn: Conn, files: dict[str, str], code: int, message: str
) -> None:
    write_migration(project / "migrations", "0", "first", "CREATE TABLE first (id int);")
    for name, text in files.items():
        (project / "migrations" / name).write_text(text)
    result = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert _tables(conn) == set()


def test_missing_folder(tmp_path: Path, db_url: str) -> None:
    result = run_pgshift(["migrate", "--dir", "nowhere"], cwd=tmp_path, url=db_url)
    assert result.returncode == 6
    assert "nowhere does not exist" in result.stderr


def test_unknown_config_key_names_the_key(project: Path, db_url: str) -> None:
    (project / "pgshift.toml").write_text('lock_timeot = "1s"\n')
    result = run_pgshift(["status"], cwd=project, url=db_url)
    assert result.returncode == 3
    assert "Unknown setting 'lock_timeot'" in result.stderr and "pgshift.toml" in result.stderr
