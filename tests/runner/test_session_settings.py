"""Per-migration server settings (`-- pgshift:set`, an ops file's `settings:`; issue #17): in effect for the
migration's statements on the server, gone afterwards on the same connection, checked before anything runs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from pgshift import api
from pgshift.config import Settings
from pgshift.errors import MigrationSourceError
from pgshift.units import Duration
from tests.helpers import database_owner_role, run_pgshift, write_migration

Conn = psycopg.Connection[Any]

# An index expression that reports, from inside the server's index build, the maintenance_work_mem it runs under.
REPORTER = """
CREATE TABLE t (id int PRIMARY KEY);
INSERT INTO t SELECT generate_series(1, 10);
CREATE FUNCTION report_mwm(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'mwm=%', current_setting('maintenance_work_mem'); RETURN $1; END $$;
"""


class _Settings:
    """Observer: the settings on the migrating connection as each statement starts, and the server's notices."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []  # (statement, maintenance_work_mem, work_mem)
        self.notices: list[str] = []
        self._hooked: set[int] = set()

    def before(self, conn: Conn, migration: Any, stmt: Any) -> None:
        if id(conn) not in self._hooked:
            self._hooked.add(id(conn))
            conn.add_notice_handler(lambda diag: self.notices.append(str(diag.message_primary)))
        row = conn.execute("SELECT current_setting('maintenance_work_mem'), current_setting('work_mem')").fetchone()
        assert row is not None
        self.seen.append((" ".join(stmt.sql.split())[:40], str(row[0]), str(row[1])))

    def after(self, conn: Conn, migration: Any, stmt: Any, error: BaseException | None) -> None:
        pass


def _settings(tmp_path: Path, url: str) -> Settings:
    return Settings(database_url=url, base_dir=tmp_path, migrations_dir="migrations")


def test_settings_apply_to_their_migration_only_in_transactions_and_autocommit(tmp_path: Path, db_url: str,
                                                                               conn: Conn) -> None:
    conn.execute(REPORTER)
    default = conn.execute("SHOW maintenance_work_mem").fetchone()
    assert default == ("64MB",)
    folder = tmp_path / "migrations"
    # An autocommit statement (SET + RESET around it) and a transactional one (SET LOCAL) with settings,
    # then migrations without any, on the same connection.
    write_migration(folder, "1", "index", "CREATE INDEX CONCURRENTLY t_r ON t (report_mwm(id));",
                    directives=("set maintenance_work_mem=1GB", "set work_mem = '32MB'"))
    write_migration(folder, "2", "plain", "CREATE INDEX CONCURRENTLY t_r2 ON t (report_mwm(id + 1));")
    write_migration(folder, "3", "tx", "ALTER TABLE t ADD COLUMN a int;", directives=("set work_mem=48MB",))
    write_migration(folder, "4", "after", "ALTER TABLE t ADD COLUMN b int;")
    observer = _Settings()
    api.migrate(_settings(tmp_path, db_url), observer=observer)
    assert observer.seen == [
        ("CREATE INDEX CONCURRENTLY t_r ON t (repo", "1GB", "32MB"),
        ("CREATE INDEX CONCURRENTLY t_r2 ON t (rep", "64MB", "4MB"),
        ("ALTER TABLE t ADD COLUMN a int", "64MB", "48MB"),
        ("ALTER TABLE t ADD COLUMN b int", "64MB", "4MB"),
    ]
    # Inside the server's index build itself: the first build ran with 1GB, the next with the default.
    first = {n for n in observer.notices[:10]}
    assert first == {"mwm=1GB"} and set(observer.notices[-10:]) == {"mwm=64MB"}, observer.notices


def test_nothing_is_left_set_on_the_connection_after_a_migration(tmp_path: Path, db_url: str, conn: Conn) -> None:
    """The engine on a connection of the caller's (a pooled one): after each kind of step, SHOW is the default."""
    from pgshift.db.history import History
    from pgshift.runner.execute import Executor, Timeouts
    from pgshift.runner.retry import RetryPolicy

    conn.execute(REPORTER)
    folder = tmp_path / "migrations"
    write_migration(folder, "1", "index", "CREATE INDEX CONCURRENTLY t_r ON t (id);",
                    directives=("set maintenance_work_mem=1GB",))
    write_migration(folder, "2", "tx", "ALTER TABLE t ADD COLUMN a int;", directives=("set maintenance_work_mem=2GB",))
    _fmt, migrations = api.load(_settings(tmp_path, db_url))
    with psycopg.connect(db_url, autocommit=True) as pooled:
        history = History(pooled, "pgshift")
        history.ensure()
        timeouts = Timeouts(Duration.parse("2s"), Duration.parse("30s"))
        executor = Executor(pooled, history, server_major=15, timeouts=timeouts,
                            retry=RetryPolicy(attempts=2, initial_ms=10, max_ms=20))
        defaults = pooled.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
                                  ).fetchone()
        for migration in migrations:
            executor.run(migration, "up")
            assert pooled.execute("SHOW maintenance_work_mem").fetchone() == ("64MB",), migration.label
            # The autocommit step's session-level timeouts too.
            assert pooled.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
                                  ).fetchone() == defaults, migration.label


def test_dry_run_shows_the_set_lines(tmp_path: Path, db_url: str, conn: Conn) -> None:
    conn.execute(REPORTER)
    folder = tmp_path / "migrations"
    write_migration(folder, "1", "index", "CREATE INDEX CONCURRENTLY t_r ON t (id);",
                    directives=("set maintenance_work_mem=1GB",))
    write_migration(folder, "2", "tx", "ALTER TABLE t ADD COLUMN a int;", directives=("set work_mem=64MB",))
    result = run_pgshift(["migrate", "--dry-run"], cwd=tmp_path, url=db_url)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"SET maintenance_work_mem = '1GB';\s*CREATE INDEX CONCURRENTLY t_r ON t \(id\);\s*"
                     r"RESET lock_timeout;\s*RESET statement_timeout;\s*RESET maintenance_work_mem;", out), out
    assert re.search(r"SET LOCAL work_mem = '64MB';\s*ALTER TABLE t ADD COLUMN a int;\s*COMMIT;", out), out


def test_ops_file_settings_apply_to_its_steps(tmp_path: Path, db_url: str, conn: Conn) -> None:
    conn.execute(REPORTER)
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "1_idx.ops.yaml").write_text(
        "settings:\n  maintenance_work_mem: 512MB\noperations:\n"
        "  - create_index: {table: t, name: t_r, columns: [id]}\n")
    dry = run_pgshift(["migrate", "--dry-run"], cwd=tmp_path, url=db_url)
    assert dry.returncode == 0, dry.stderr
    assert "SET maintenance_work_mem = '512MB';" in dry.stdout and "RESET maintenance_work_mem;" in dry.stdout
    observer = _Settings()
    api.migrate(_settings(tmp_path, db_url), observer=observer)
    assert [s[1] for s in observer.seen if "CREATE INDEX" in s[0]] == ["512MB"], observer.seen


@pytest.fixture
def plain_role(conn: Conn, db_name: str, db_url: str) -> Iterator[str]:
    with database_owner_role(conn, db_name, db_url, "app", owns_public=True) as url:
        yield url


@pytest.mark.parametrize(("directive", "expected"), [
    ("set maintenance_wrok_mem=1GB", "maintenance_wrok_mem is not a setting of this server"),
    ("set maintenance_work_mem=1XB", "maintenance_work_mem='1XB' is refused by the server: invalid value for "
                                     "parameter \"maintenance_work_mem\": \"1XB\". Valid units for this parameter"),
    ("set work_mem=10", "work_mem='10' is refused by the server: 10 kB is outside the valid range"),
    ("set shared_buffers=1GB", "shared_buffers needs a server restart (context postmaster)"),
    ("set log_checkpoints=on", "log_checkpoints is read from the server's configuration on reload"),
    ("set lock_timeout=5s", "lock_timeout has its own directive"),
    ("set work_mem", "'-- pgshift:set' needs name=value"),
])
def test_a_bad_setting_is_refused_before_anything_runs(tmp_path: Path, db_url: str, conn: Conn, directive: str,
                                                       expected: str) -> None:
    folder = tmp_path / "migrations"
    write_migration(folder, "1", "first", "CREATE TABLE first_one (id int);")
    path = write_migration(folder, "2", "bad", "CREATE TABLE second_one (id int);", directives=(directive,))
    result = run_pgshift(["migrate", "--no-backup"], cwd=tmp_path, url=db_url)
    message = " ".join(result.stderr.split())
    assert result.returncode == MigrationSourceError.exit_code, message
    assert f"{path}:1:" in message and expected in message, message
    # Nothing ran: not even the migration before it.
    assert conn.execute("SELECT to_regclass('first_one')").fetchone() == (None,)
    dry = run_pgshift(["migrate", "--dry-run"], cwd=tmp_path, url=db_url)
    assert dry.returncode == MigrationSourceError.exit_code and expected in " ".join(dry.stderr.split())


def test_a_superuser_setting_is_refused_for_a_plain_role(tmp_path: Path, plain_role: str, conn: Conn) -> None:
    folder = tmp_path / "migrations"
    path = write_migration(folder, "1", "quiet", "CREATE TABLE t1 (id int);",
                           directives=("set log_min_duration_statement=0",))
    result = run_pgshift(["migrate", "--no-backup"], cwd=tmp_path, url=plain_role)
    message = " ".join(result.stderr.split())
    assert result.returncode == MigrationSourceError.exit_code, message
    assert (f"{path}:1: log_min_duration_statement can only be set by a superuser and role "
            f"{conninfo.conninfo_to_dict(plain_role)['user']} is not one (context superuser)") in message, message
    assert conn.execute("SELECT to_regclass('t1')").fetchone() == (None,)


def test_an_ops_file_setting_error_names_its_line(tmp_path: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE t (id int)")
    folder = tmp_path / "migrations"
    folder.mkdir()
    path = folder / "1_idx.ops.yaml"
    path.write_text("lock_timeout: 1s\nsettings:\n  max_parallel_maintenance_workers: lots\n"
                    "operations:\n  - create_index: {table: t, name: t_i, columns: [id]}\n")
    result = run_pgshift(["migrate", "--no-backup"], cwd=tmp_path, url=db_url)
    message = " ".join(result.stderr.split())
    assert result.returncode == MigrationSourceError.exit_code, message
    assert f"{path}:3: settings.max_parallel_maintenance_workers: max_parallel_maintenance_workers='lots'" \
        in message, message


def test_a_custom_setting_is_set_and_reset_and_a_second_one_of_a_name_is_refused(tmp_path: Path, db_url: str,
                                                                                   conn: Conn) -> None:
    conn.execute(REPORTER)
    folder = tmp_path / "migrations"
    write_migration(folder, "1", "index", "CREATE INDEX CONCURRENTLY t_r ON t (id);",
                    directives=("set myapp.flag=on",))

    class _Custom(_Settings):
        def before(self, conn: Conn, migration: Any, stmt: Any) -> None:
            row = conn.execute("SELECT current_setting('myapp.flag', true)").fetchone()
            self.seen.append(("", str(row[0]) if row else "", ""))

    observer: _Settings = _Custom()
    api.migrate(_settings(tmp_path, db_url), observer=observer)
    assert observer.seen == [("", "on", "")]
    path = write_migration(folder, "2", "twice", "SELECT 1;", directives=("set work_mem=8MB", "set WORK_MEM=9MB"))
    with pytest.raises(MigrationSourceError, match=f"{re.escape(str(path))}:2: work_mem is already set at "
                                                   f"{re.escape(str(path))}:1"):
        api.migrate(_settings(tmp_path, db_url))
