"""Lock holders whose age pg_stat_activity does not show: another role's session seen by a migration
role without pg_read_all_stats (the usual role on a managed service), and a prepared transaction,
which no session holds. The step engine names both and waits for them without queuing."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgshift import api
from pgshift.config import Settings
from pgshift.embedded import EmbeddedCluster
from pgshift.units import Duration
from tests.helpers import check_result, database_owner_role, run_pgshift, small_cluster, write_migration

Conn = psycopg.Connection[Any]


def _settings(tmp_path: Path, url: str) -> Settings:
    return Settings(database_url=url, base_dir=tmp_path, migrations_dir="migrations",
                    lock_timeout=Duration.parse("300ms"), lock_retries=4,
                    retry_initial_delay=Duration.parse("200ms"), retry_max_delay=Duration.parse("400ms"))


def test_another_roles_old_transaction_is_waited_for_without_queuing(tmp_path: Path, conn: Conn, db_name: str,
                                                                     db_url: str) -> None:
    """Its age reads as NULL to this role; the engine counts the time it has seen the lock held instead
    of taking it for a transaction that has just begun, so it stops queuing behind it."""
    with database_owner_role(conn, db_name, db_url, "mig", owns_public=True) as url:
        with psycopg.connect(url, autocommit=True) as owner:
            owner.execute("CREATE TABLE t (id int PRIMARY KEY); GRANT SELECT ON t TO PUBLIC")
        write_migration(tmp_path / "migrations", "1", "alter", "ALTER TABLE t ADD COLUMN note text;")
        notes: list[str] = []
        with psycopg.connect(db_url, application_name="the_app") as app:  # the superuser: another role
            app.execute("SELECT * FROM t")  # ACCESS SHARE on t until it ends
            pid = app.info.backend_pid

            def notify(message: str) -> None:
                notes.append(message)
                if "waits without queuing" in message and "check 2/4" in message:
                    app.rollback()

            report = api.migrate(_settings(tmp_path, url), notify=notify)
        user = conn.info.user
        behind = [n for n in notes if f"it would wait behind pid {pid} of role {user} (state and age hidden: "
                  "this role lacks pg_read_all_stats, part of pg_monitor" in n]
        assert behind, notes
        assert report.applied[0].retries == 2, notes
        events = conn.execute("SELECT event, detail->>'attempt' FROM pgshift.events WHERE event LIKE 'lock-%' "
                              "ORDER BY id").fetchall()
        # The first attempt queues (the transaction has only just been seen); then it is known to be old.
        assert events == [("lock-timeout-retry", "1"), ("lock-wait-without-queuing", "2")], (events, notes)
        assert re.search(r"seen holding it for \d+\.\ds\)", behind[-1]), behind
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 't' "
                            "AND column_name = 'note'").fetchone() == (1,)


def test_the_lock_timeout_message_names_another_roles_session(tmp_path: Path, conn: Conn, db_name: str,
                                                               db_url: str) -> None:
    with database_owner_role(conn, db_name, db_url, "mig", owns_public=True) as url:
        with psycopg.connect(url, autocommit=True) as owner:
            owner.execute("CREATE TABLE t (id int PRIMARY KEY); GRANT SELECT ON t TO PUBLIC")
        (tmp_path / "pgshift.toml").write_text('lock_timeout = "200ms"\nlock_retries = 1\n'
                                               '[backup]\npolicy = "never"\n')
        write_migration(tmp_path / "migrations", "1", "alter", "ALTER TABLE t ADD COLUMN note text;")
        with psycopg.connect(db_url) as app:
            app.execute("SELECT * FROM t")
            pid = app.info.backend_pid
            result = run_pgshift(["migrate"], cwd=tmp_path, url=url)
        message = " ".join(result.stderr.split())
        assert result.returncode == 12, message
        assert re.search(rf"Blocking sessions: pid {pid} of role {conn.info.user} \(state and age hidden: this role "
                         r"lacks pg_read_all_stats, part of pg_monitor, seen holding it for \d+\.\ds\)",
                         message), message


@pytest.fixture(scope="module")
def prepared_server() -> Iterator[EmbeddedCluster]:
    """A cluster that allows prepared transactions (PostgreSQL's default allows none)."""
    with small_cluster("pgshift-prepared-", {"max_prepared_transactions": "4"}) as cluster:
        yield cluster


@pytest.fixture
def prepared_url(prepared_server: EmbeddedCluster) -> Iterator[str]:
    name = f"prepared_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(prepared_server.socket_dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield prepared_server.socket_dsn(name)
        for (gid,) in admin.execute("SELECT gid FROM pg_prepared_xacts WHERE database = %s", (name,)).fetchall():
            admin.execute(sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal(gid)))
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _prepare(url: str, statement: str, gid: str) -> None:
    """Leave a prepared transaction that ran ``statement`` (and holds its locks) behind."""
    with psycopg.connect(url) as stuck:
        stuck.execute(statement)
        stuck.execute(sql.SQL("PREPARE TRANSACTION {}").format(sql.Literal(gid)))


def _project(tmp_path: Path, lock_timeout: str, retries: int, name: str, up: str) -> None:
    """A project whose one migration gives up after ``retries`` retries of ``lock_timeout``, no backup."""
    (tmp_path / "pgshift.toml").write_text(f'lock_timeout = "{lock_timeout}"\nlock_retries = {retries}\n'
                                           '[backup]\npolicy = "never"\n')
    write_migration(tmp_path / "migrations", "1", name, up)


def _sessions_check(tmp_path: Path, url: str) -> dict[str, Any]:
    return check_result("no sessions blocking DDL", cwd=tmp_path, url=url)


def test_a_prepared_transaction_holding_a_lock_is_named_with_the_way_to_end_it(tmp_path: Path,
                                                                               prepared_url: str) -> None:
    """A prepared transaction keeps its locks with no session behind it; the message says how to end it,
    and doing so lets the migration through."""
    url = prepared_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute('CREATE TABLE "Acct" (id int PRIMARY KEY)')
        _prepare(url, 'SELECT * FROM "Acct"', "it's stuck")
        _project(tmp_path, "200ms", 2, "alter", 'ALTER TABLE "Acct" ADD COLUMN note text;')
        time.sleep(0.25)  # older than lock_timeout: not queued behind
        sessions = _sessions_check(tmp_path, url)
        assert sessions["status"] == "failed", sessions
        assert re.fullmatch(r"prepared transaction 'it''s stuck' of role \w+, prepared \d+s ago, holds locks on "
                            r"\"Acct\" \(COMMIT PREPARED 'it''s stuck' or ROLLBACK PREPARED "
                            r"'it''s stuck' ends it\)", sessions["detail"][0]), sessions
        result = run_pgshift(["migrate"], cwd=tmp_path, url=url)
        message = " ".join(result.stderr.split())
        assert result.returncode == 12, message
        assert re.search(r"Blocking sessions: prepared transaction 'it''s stuck' of role \w+, prepared \d+\.\ds "
                         r"ago; it keeps its locks until someone runs COMMIT PREPARED 'it''s stuck' or "
                         r"ROLLBACK PREPARED 'it''s stuck'\.", message), message
        assert "waits without queuing" in message, message  # its age is known: never queued behind
        assert conn.execute("SELECT count(*) FROM pgshift.events WHERE event = 'lock-timeout-retry'"
                            ).fetchone() == (0,), message
        conn.execute(sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal("it's stuck")))  # what it says
        result = run_pgshift(["migrate"], cwd=tmp_path, url=url)
        assert result.returncode == 0, result.stderr
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'Acct' "
                            "AND column_name = 'note'").fetchone() == (1,)


def test_check_warns_of_a_prepared_transaction_on_other_tables(tmp_path: Path, prepared_url: str) -> None:
    url = prepared_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE other (id int); CREATE TABLE t (id int)")
        _prepare(url, "INSERT INTO other VALUES (1)", "left over")
        write_migration(tmp_path / "migrations", "1", "alter", "ALTER TABLE t ADD COLUMN note text;")
        sessions = _sessions_check(tmp_path, url)
        assert sessions["status"] == "warning" and sessions["value"] == "0 long-running, 1 prepared transaction(s)"
        assert re.fullmatch(r"prepared transaction 'left over' of role \w+, prepared \d+s ago: it keeps its locks "
                            r"and holds back vacuum's cleanup until ended \(COMMIT PREPARED 'left over' or "
                            r"ROLLBACK PREPARED 'left over' ends it\)", sessions["detail"][0]), sessions
        conn.execute("COMMIT PREPARED 'left over'")
        assert _sessions_check(tmp_path, url)["status"] == "passed"


def test_a_step_naming_no_table_names_a_prepared_transaction_and_another_roles_session(
        tmp_path: Path, prepared_url: str) -> None:
    """A DO block's tables are not known, so when it gives up the message lists the oldest open
    transactions instead: a prepared transaction and another role's session (whose age this role cannot
    see) are open transactions too, and were left out."""
    url = prepared_url
    dbname = url.rsplit("/", 1)[-1].split("?")[0]
    with psycopg.connect(url, autocommit=True) as conn, \
            database_owner_role(conn, dbname, url, "mig", owns_public=True) as mig_url:
        with psycopg.connect(mig_url, autocommit=True) as owner:
            owner.execute("CREATE TABLE t (id int); GRANT SELECT ON t TO PUBLIC")
        _prepare(url, "SELECT * FROM t", "stuck_one")
        _project(tmp_path, "100ms", 0, "do", "DO $$BEGIN ALTER TABLE t ADD COLUMN note text; END$$;")
        try:
            with psycopg.connect(url, application_name="the_app") as app:  # the superuser: another role
                app.execute("SELECT 1")
                pid = app.info.backend_pid
                result = run_pgshift(["migrate"], cwd=tmp_path, url=mig_url)
        finally:
            conn.execute("ROLLBACK PREPARED 'stuck_one'")  # before the role's tables change owner
        user = conn.info.user
    message = " ".join(result.stderr.split())
    assert result.returncode == 12, message
    assert "Open transactions now: prepared transaction 'stuck_one' of role" in message, message
    assert f"pid {pid} of role {user} (state and age hidden: this role lacks pg_read_all_stats" in message, message
