"""Recovery after kill -9 and lost connections: nothing gets stuck, nothing lies (issue #12)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgshift.embedded import EmbeddedCluster
from pgshift.safety.tools import session_ended
from tests.helpers import run_pgshift, small_cluster, start_pgshift, write_migration
from tests.runner.test_crash_and_concurrency import SLEEP_IF_MARKED, _tables, _wait_for_backend_exit, _wait_for_query

Conn = psycopg.Connection[tuple[object, ...]]
# Long enough that the index build waits on the test's blocker instead of timing out and retrying.
PATIENT = {"PGSHIFT_LOCK_TIMEOUT": "60s"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "migrations").mkdir()
    return tmp_path


def _index_valid(conn: Conn, name: str) -> bool | None:
    row = conn.execute(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s", (name,)
    ).fetchone()
    return None if row is None else bool(row[0])


@pytest.mark.parametrize("before", [[], ["CREATE TABLE other (id int);"], ["CREATE TABLE other (id int);",
                                                                          "INSERT INTO other VALUES (1);"]],
                         ids=["first", "second", "third"])
def test_kill_during_concurrent_index_build_is_repaired_at_any_position(
    project: Path, db_url: str, conn: Conn, before: list[str]
) -> None:
    conn.execute("CREATE TABLE t (x int)")
    write_migration(project / "migrations", "1", "index", "\n".join(
        [*before, "CREATE INDEX CONCURRENTLY t_x ON t (x);", "INSERT INTO t VALUES (42);"]))
    with psycopg.connect(db_url) as blocker:
        # An open writer: the build commits its INVALID catalog entry, then waits for this to end.
        blocker.execute("INSERT INTO t VALUES (1)")
        proc = start_pgshift(["migrate"], cwd=project, url=db_url, env=PATIENT)
        pid = _wait_for_query(conn, "CREATE INDEX CONCURRENTLY t_x", on_lock=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        _wait_for_backend_exit(conn, pid)
        blocker.rollback()
    assert _index_valid(conn, "t_x") is False  # the kill left the INVALID index behind
    row = conn.execute("SELECT status, statements_done FROM pgshift.migrations").fetchone()
    assert row == ("running", len(before))

    rerun = run_pgshift(["migrate"], cwd=project, url=db_url, env=PATIENT)
    assert rerun.returncode == 0, rerun.stderr
    assert "dropping INVALID index t_x left by the interrupted build" in rerun.stderr
    assert rerun.stderr.count("dropping INVALID index") == 1, rerun.stderr  # dropped once, before the step's retries
    assert _index_valid(conn, "t_x") is True
    # A resume after completed statements is in the event log, at the statement the kill interrupted.
    assert conn.execute("SELECT detail->>'statement' FROM pgshift.events WHERE event = 'resumed'").fetchall() == (
        [(str(len(before) + 1),)] if before else [])
    assert conn.execute("SELECT count(*) FROM t WHERE x = 42").fetchone() == (1,)
    assert conn.execute("SELECT status FROM pgshift.migrations").fetchone() == ("applied",)


def test_resume_starts_over_when_an_already_run_statement_was_edited(project: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE sleep_marker ()")
    conn.execute("CREATE TABLE a (id int)")
    path = write_migration(project / "migrations", "1", "steps", "\n".join([
        "INSERT INTO a VALUES (1);",
        SLEEP_IF_MARKED,
        "INSERT INTO a VALUES (3);",
    ]), directives=("no-transaction",))
    proc = start_pgshift(["migrate"], cwd=project, url=db_url)
    pid = _wait_for_query(conn, "pg_sleep(60)")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    _wait_for_backend_exit(conn, pid)
    assert conn.execute("SELECT statements_done FROM pgshift.migrations").fetchone() == (1,)

    # The statement that already ran is edited: its progress no longer describes the file.
    path.write_text(path.read_text().replace("VALUES (1)", "VALUES (2)"))
    conn.execute("DROP TABLE sleep_marker")
    rerun = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming" not in rerun.stderr
    assert "statement 1 of 1 steps changed since an interrupted run completed it; starting again at statement 1" \
        in " ".join(rerun.stderr.split())
    assert "(statement-by-statement," in rerun.stdout + rerun.stderr  # the mode the report names
    values = [r[0] for r in conn.execute("SELECT id FROM a ORDER BY id").fetchall()]
    assert values == [1, 2, 3]  # the edited statement ran; the old one's row stays, as committed


@pytest.fixture
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """A small cluster of this test's own, which it may restart without disturbing other tests."""
    with small_cluster("pgshift-restart-") as cluster:
        yield cluster


@pytest.mark.parametrize("directives", [(), ("no-transaction",)], ids=["transaction", "statement-by-statement"])
def test_server_restart_during_migrate_is_a_connection_error_with_unknown_outcome(
    project: Path, own_cluster: EmbeddedCluster, directives: tuple[str, ...]
) -> None:
    url = own_cluster.socket_dsn()
    with psycopg.connect(url, autocommit=True) as setup:
        setup.execute("CREATE TABLE sleep_marker ()")
    write_migration(project / "migrations", "1", "slow",
                    f"CREATE TABLE a (id int);\n{SLEEP_IF_MARKED}\nCREATE TABLE b (id int);", directives=directives)
    proc = start_pgshift(["migrate"], cwd=project, url=url)
    with psycopg.connect(url, autocommit=True) as watcher:
        _wait_for_query(watcher, "pg_sleep(60)")
    # Same port and options: pg_ctl restart reuses the postmaster's command line.
    own_cluster._run(["pg_ctl", "-D", str(own_cluster.data), "-l", str(own_cluster.log), "-m", "fast", "-w", "-t", "60",
                      "restart"])
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err
    assert "connection to the server was lost" in err
    assert "outcome of migration 1 slow is unknown" in err
    assert "history marks it failed" not in err and "rolled back" not in err.split("outcome")[0]

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE sleep_marker")
    rerun = run_pgshift(["migrate"], cwd=project, url=url)
    assert rerun.returncode == 0, rerun.stderr
    assert "applied" in rerun.stdout
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT status FROM pgshift.migrations").fetchone() == ("applied",)
        assert _tables(conn) >= {"a", "b"}


def test_server_restart_during_backup_removes_the_folder_and_says_what_failed(
    project: Path, own_cluster: EmbeddedCluster
) -> None:
    """The server restarts while pg_dump copies a table, the backup's own session idle beside it (every
    table is large, counted from the archive). One paragraph says what failed (no stray 'error ignored in
    rollback' line from the driver, which finds the idle session gone only on leaving it), and no
    half-written backup folder stays behind."""
    url = own_cluster.socket_dsn()
    (project / "pgshift.toml").write_text("[backup]\nhash_max_mb = 0\n")
    with psycopg.connect(url, autocommit=True) as setup:
        setup.execute("DROP TABLE IF EXISTS copied; CREATE TABLE copied AS SELECT g AS id, md5(g::text) AS a, "
                      "md5((-g)::text) AS b FROM generate_series(1, 300000) g")
    proc = start_pgshift(["backup", "--to", str(project / "backups")], cwd=project, url=url)
    with psycopg.connect(url, autocommit=True) as watcher:
        deadline = time.monotonic() + 20
        while watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY public.copied %%'"
                              ).fetchone() != (1,):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.01)
    own_cluster._run(["pg_ctl", "-D", str(own_cluster.data), "-l", str(own_cluster.log), "-m", "fast", "-w",
                      "-t", "60", "restart"])
    _out, err = proc.communicate(timeout=60)
    # libpq prints the server's goodbye or the closed socket, whichever it meets first: either is a lost
    # connection (exit 4, as for migrate), not a failed backup, and the hint is to run it again.
    assert proc.returncode == 4, err
    assert len(err.strip().splitlines()) == 1 and "error ignored" not in err, err
    assert err.startswith("error (connection): The server ended pg_dump's connection during the backup"), err
    assert "then run `pgshift backup` again" in err, err
    assert list((project / "backups").iterdir()) == [], err
    again = run_pgshift(["backup", "--to", str(project / "backups")], cwd=project, url=url)  # the hint works
    assert again.returncode == 0, again.stderr
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE copied")


def _kill_at_sleep(project: Path, db_url: str, conn: Conn) -> None:
    proc = start_pgshift(["migrate"], cwd=project, url=db_url)
    pid = _wait_for_query(conn, "pg_sleep(60)")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    _wait_for_backend_exit(conn, pid)


def test_status_after_a_kill_names_the_interrupted_migration_and_where_a_rerun_resumes(
    project: Path, db_url: str, conn: Conn
) -> None:
    conn.execute("CREATE TABLE sleep_marker ()")
    write_migration(project / "migrations", "1", "steps", "\n".join([
        "CREATE TABLE a (id int);",
        SLEEP_IF_MARKED,
        "CREATE INDEX CONCURRENTLY a_id ON a (id);",
    ]), directives=("no-transaction",))
    _kill_at_sleep(project, db_url, conn)
    status = run_pgshift(["status"], cwd=project, url=db_url)
    assert status.returncode == 0, status.stderr
    out = " ".join(status.stdout.split())
    assert "0 applied, 1 pending, 1 interrupted, 0 problem(s)" in out
    assert "1 steps was interrupted" in out
    assert "Statement 1 of 3 is committed; `pgshift migrate` resumes at statement 2" in out


def test_status_after_a_kill_in_a_transaction_says_the_rerun_runs_it_again(
    project: Path, db_url: str, conn: Conn
) -> None:
    conn.execute("CREATE TABLE sleep_marker ()")
    write_migration(project / "migrations", "1", "first", "CREATE TABLE a (id int);")
    write_migration(project / "migrations", "2", "slow", f"CREATE TABLE b (id int);\n{SLEEP_IF_MARKED}")
    write_migration(project / "migrations", "3", "after", "CREATE TABLE c (id int);")
    _kill_at_sleep(project, db_url, conn)
    status = run_pgshift(["status", "--json"], cwd=project, url=db_url)
    assert status.returncode == 0, status.stderr
    import json

    [interrupted] = json.loads(status.stdout)["interrupted"]
    assert interrupted["version"] == "2" and interrupted["state"] == "interrupted"
    assert "nothing of it is applied. `pgshift migrate` runs it again in one transaction" in interrupted["detail"]


def test_a_statement_by_statement_migration_a_killed_run_never_started_is_pending_not_interrupted(
    project: Path, db_url: str, conn: Conn
) -> None:
    """A run killed after one migration committed and before the next began: the next, run step by
    step, commits a 'running' row before its first statement, so without one it had not started and
    status must not say that its transaction was rolled back and runs again in one."""
    write_migration(project / "migrations", "1", "first", "CREATE TABLE a (id int);")
    write_migration(project / "migrations", "2", "index", "CREATE INDEX CONCURRENTLY a_id ON a (id);",
                    directives=("no-transaction",))
    assert run_pgshift(["migrate", "--to", "1"], cwd=project, url=db_url).returncode == 0
    # What the killed run left: its start event listing both, migration 1's row, nothing of 2.
    conn.execute("INSERT INTO pgshift.events (version, event, actor, detail) VALUES "
                 "(NULL, 'migrate-started', 'test', '{\"pending\": [\"1\", \"2\"]}')")
    status = run_pgshift(["status", "--json"], cwd=project, url=db_url)
    assert status.returncode == 0, status.stderr
    import json

    report = json.loads(status.stdout)
    assert report["interrupted"] == [], report["interrupted"]
    assert report["pending"] == ["2"], report


def test_status_after_a_failure_says_what_the_rerun_does(project: Path, db_url: str) -> None:
    write_migration(project / "migrations", "1", "bad", "CREATE TABLE a (id int);\nSELECT * FROM missing;")
    assert run_pgshift(["migrate"], cwd=project, url=db_url).returncode == 8
    status = run_pgshift(["status"], cwd=project, url=db_url)
    out = " ".join(status.stdout.split())
    assert "0 applied, 1 pending, 1 failed, 0 problem(s)" in out
    assert 'relation "missing" does not exist' in out
    assert "Nothing of it is committed; `pgshift migrate` runs it again in one transaction." in out


def test_a_failed_migration_carries_the_servers_error_as_attributes(tmp_path: Path, db_url: str) -> None:
    """Library users get the SQLSTATE, DETAIL, version, file, line and statement without parsing the
    message, and the server's own error as the cause (issue #13: errors like psycopg's)."""
    from pgshift import api
    from pgshift.config import Settings
    from pgshift.errors import MigrationFailed

    folder = tmp_path / "migrations"
    write_migration(folder, "001", "accounts", "CREATE TABLE accounts (id int PRIMARY KEY);\n"
                                               "INSERT INTO accounts VALUES (1);")
    path = write_migration(folder, "002", "duplicate", "SELECT 1;\nINSERT INTO accounts VALUES (1);")
    settings = Settings(database_url=db_url, base_dir=tmp_path, migrations_dir="migrations")
    with pytest.raises(MigrationFailed) as caught:
        api.migrate(settings)
    error = caught.value
    assert (error.sqlstate, error.version, error.file, error.line) == ("23505", "002", str(path), 3)
    assert error.statement == "INSERT INTO accounts VALUES (1)"
    assert error.detail == "Key (id)=(1) already exists."
    assert isinstance(error.__cause__, psycopg.errors.UniqueViolation)


def test_a_cleanup_that_fails_after_ctrl_c_still_reports_the_interrupt(db_url: str) -> None:
    """Ctrl-C (or SIGTERM) can land while a session has a statement in flight; a cleanup that then uses that
    session fails ("another command is already in progress"). The command was stopped by the user: exit 130,
    "Interrupted", not a lost connection (exit 4) asking to run it again."""
    import click
    from click.testing import CliRunner

    from pgshift.cli.common import handle_errors

    @click.command()
    @handle_errors
    def stopped() -> None:
        with psycopg.connect(db_url, autocommit=True) as session:
            session.pgconn.send_query(b"SELECT pg_sleep(0.2)")  # in flight, its reply not read
            try:
                raise KeyboardInterrupt
            finally:
                session.execute("RESET lock_timeout")  # the cleanup meets the statement in flight

    done = CliRunner().invoke(stopped, [])
    assert done.exit_code == 130, done.output
    assert "error (interrupted): Interrupted" in done.output and "another command is already in progress" in done.output
    assert "connection to the server was lost" not in done.output


@pytest.mark.parametrize("stderr", [
    # What pg_dump prints when the server ends its session, by how the goodbye reached libpq.
    "pg_dump: detail: Error message from server: FATAL:  terminating connection due to administrator command",
    "pg_dump: error: Dumping the contents of table \"t\" failed: PQgetResult() failed.\n"
    "pg_dump: detail: Error message from server: server closed the connection unexpectedly",
    "pg_dump: error: connection to server failed: FATAL:  the database system is shutting down",
    "pg_dump: error: could not receive data from server: Connection reset by peer",
])
def test_a_session_the_server_ended_is_told_from_other_tool_failures(stderr: str) -> None:
    assert session_ended(stderr)
    assert not session_ended('pg_dump: error: query failed: ERROR:  permission denied for table "t"')
