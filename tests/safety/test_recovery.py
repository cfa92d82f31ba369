"""kill -9 during backup and restore: no orphan child, no stale leftover, nothing hidden (issue #12)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgshift.db.connect import drop_database
from pgshift.db.history import History
from pgshift.db.lock import lock_key
from pgshift.safety import take_backup
from pgshift.safety.catalog import latest_backup
from tests.helpers import run_pgshift, start_pgshift

from .helpers import count, databases, make_settings, seed

Conn = psycopg.Connection[tuple[object, ...]]


def _env(pg_server: Any) -> dict[str, str]:
    env = {"PGSHIFT_LOCK_WAIT": "60s"}
    if pg_server.cluster is not None:
        env["PGSHIFT_BACKUP__PG_BINDIR"] = str(pg_server.cluster.bindir)
    return env


def _sessions(conn: Conn, *apps: str) -> list[int]:
    rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND application_name = ANY (%s)", (list(apps),)).fetchall()
    return [int(str(r[0])) for r in rows]


def _wait_until(check: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout}s")


def _processes_naming(word: str) -> list[int]:
    """OS processes whose command line mentions ``word`` (a test database's unique name)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if word in cmdline and "pg_dump" in cmdline:
                found.append(int(entry.name))
    return found


@pytest.fixture
def blocker(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A session holding ACCESS EXCLUSIVE on accounts: pg_dump waits on it, deterministically."""
    seed(db_url, rows=20)
    with psycopg.connect(db_url) as conn:
        conn.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        yield conn
        conn.rollback()


def _start_blocked_backup(tmp_path: Path, db_url: str, pg_server: Any, conn: Conn,
                          to: Path) -> subprocess.Popen[str]:
    proc = start_pgshift(["backup", "--to", str(to)], cwd=tmp_path, url=db_url, env=_env(pg_server))
    _wait_until(lambda: conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pg_dump' "
        "AND wait_event_type = 'Lock'").fetchone() == (1,), "pg_dump did not wait for the table lock")
    return proc


def test_kill_during_backup_takes_pg_dump_along_and_the_next_backup_removes_the_half_folder(
    pg_server: Any, db_url: str, db_name: str, tmp_path: Path, blocker: psycopg.Connection[Any], conn: Conn
) -> None:
    blocker.rollback()  # first a good, verified backup
    settings = make_settings(tmp_path, db_url, pg_server)
    backups = tmp_path / "backups"
    good = take_backup(settings, db_url).backup
    blocker.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")

    proc = _start_blocked_backup(tmp_path, db_url, pg_server, conn, backups)
    half = [p for p in backups.iterdir() if p != good.path]
    assert len(half) == 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    # pg_dump died with pgshift, and the server ended both sessions, while the lock is still held.
    _wait_until(lambda: not _processes_naming(db_name), "pg_dump outlived the pgshift that started it")
    _wait_until(lambda: not _sessions(conn, "pg_dump", "pgshift-backup"), "the backup's sessions stayed")
    blocker.rollback()
    assert half[0].is_dir() and not (half[0] / "manifest.json").exists()

    result = run_pgshift(["backup", "--to", str(backups), "--keep", "2"], cwd=tmp_path, url=db_url,
                         env=_env(pg_server))
    assert result.returncode == 0, result.stderr
    assert f"removed incomplete backup {half[0]}" in result.stderr
    assert not half[0].exists()
    assert good.path.exists()  # --keep 2 counted the two verified backups, not the half folder
    assert len(list(backups.iterdir())) == 2


def test_backup_list_removes_a_dead_backups_folder_but_not_one_being_written(
    pg_server: Any, db_url: str, tmp_path: Path, blocker: psycopg.Connection[Any], conn: Conn
) -> None:
    backups = tmp_path / "backups"
    first = _start_blocked_backup(tmp_path, db_url, pg_server, conn, backups)
    try:
        [writing] = list(backups.iterdir())
        listed = run_pgshift(["backup", "list", "--to", str(backups)], cwd=tmp_path, url=db_url)
        assert listed.returncode == 0, listed.stderr
        assert f"{writing} is being written by pgshift pid {first.pid}" in listed.stderr
        assert writing.is_dir()  # a live writer's folder is left alone
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    listed = run_pgshift(["backup", "list", "--to", str(backups)], cwd=tmp_path, url=db_url)
    assert listed.returncode == 0, listed.stderr
    assert f"removed incomplete backup {writing}" in listed.stderr
    assert not writing.exists()


def test_keep_counts_only_verified_backups(pg_server: Any, db_url: str, tmp_path: Path) -> None:
    seed(db_url, rows=10)
    settings = make_settings(tmp_path, db_url, pg_server)
    older, newer = (take_backup(settings, db_url).backup for _ in range(2))
    unverified = take_backup(settings, db_url, verify=False).backup
    result = take_backup(settings, db_url, keep=2)
    assert set(result.removed) == {older.path, unverified.path}
    assert newer.path.exists() and result.backup.path.exists()  # the two newest verified ones


def test_keep_removes_nothing_until_there_are_that_many_verified_backups(
    pg_server: Any, db_url: str, tmp_path: Path
) -> None:
    seed(db_url, rows=10)
    settings = make_settings(tmp_path, db_url, pg_server)
    kept = [take_backup(settings, db_url, verify=False).backup for _ in range(2)]
    result = take_backup(settings, db_url, keep=2)
    assert result.removed == [] and all(b.path.exists() for b in kept)


_CHECKED_IN_COPIES = """
CREATE FUNCTION {function}(x int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF current_database() LIKE {copies}
       AND (NOT {only_with_role} OR EXISTS (SELECT FROM pg_roles WHERE rolname = {role})) THEN
        {action};
    END IF;
    RETURN true;
END $$;
CREATE TABLE {table} (x int CHECK ({function}(x)));
INSERT INTO {table} VALUES (1);
"""
# What PostgreSQL raises when a relation cannot grow (md.c, mdextend): a server whose disk is too small for
# another copy of the database.
DISK_FULL = ("RAISE EXCEPTION USING ERRCODE = 'disk_full', HINT = 'Check free disk space.', "
             "MESSAGE = 'could not extend file \"base/16384/16385\": No space left on device'")


def _check_in_copies(url: str, copies: str, action: str, *, table: str = "checked", role: str | None = None) -> None:
    """A table of one row whose CHECK runs the PL/pgSQL ``action`` only in databases named LIKE ``copies`` (and,
    with ``role``, only while that role exists): a restore's copy stalls or fails there, the source never."""
    with psycopg.connect(url, autocommit=True) as setup:
        setup.execute(psycopg.sql.SQL(_CHECKED_IN_COPIES).format(
            function=psycopg.sql.Identifier(f"{table}_ok"), table=psycopg.sql.Identifier(table),
            copies=psycopg.sql.Literal(copies), only_with_role=psycopg.sql.Literal(role is not None),
            role=psycopg.sql.Literal(role or ""), action=psycopg.sql.SQL(action)))


def test_kill_during_restore_leaves_the_live_database_and_the_rerun_drops_the_partial_copy(
    pg_server: Any, db_url: str, db_name: str, tmp_path: Path
) -> None:
    seed(db_url, rows=20)
    role = f"sleep_{db_name}"
    # Only while the marker role exists, and only in the copy a restore makes beside the live database.
    _check_in_copies(db_url, "%\\_restoring\\_%", "PERFORM pg_sleep(60)", table="slow", role=role)
    settings = make_settings(tmp_path, db_url, pg_server)
    folder = take_backup(settings, db_url).backup.path
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("CREATE ROLE {}").format(psycopg.sql.Identifier(role)))
        try:
            with psycopg.connect(db_url, autocommit=True) as live:
                live.execute("INSERT INTO slow VALUES (2)")  # after the backup: a restore would remove it
            proc = start_pgshift(["restore", str(folder), "--yes"], cwd=tmp_path, url=db_url, env=_env(pg_server))
            _wait_until(lambda: admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE %s "
                "AND wait_event = 'PgSleep'", (f"{db_name}_restoring_%",)).fetchone() == (1,),
                "the restore did not reach the slow check")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            admin.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(role)))
        [leftover] = databases(pg_server.admin_url, f"{db_name}_restoring_%")
        assert count(db_url, "slow") == 2  # the live database was untouched

        try:
            rerun = run_pgshift(["restore", str(folder), "--yes"], cwd=tmp_path, url=db_url, env=_env(pg_server))
            assert rerun.returncode == 0, rerun.stderr
            assert f"dropped database {leftover}, the partial copy an interrupted restore left behind" in rerun.stdout
            assert databases(pg_server.admin_url, f"{db_name}_restoring_%") == []
            assert count(db_url, "slow") == 1  # restored from the backup this time
        finally:
            for name in databases(pg_server.admin_url, f"{db_name}_%"):
                drop_database(admin, name)


def test_a_second_restore_of_the_same_database_is_refused_while_one_runs(
    pg_server: Any, db_url: str, db_name: str, tmp_path: Path
) -> None:
    seed(db_url, rows=20)
    settings = make_settings(tmp_path, db_url, pg_server)
    folder = take_backup(settings, db_url).backup.path
    with psycopg.connect(pg_server.admin_url, autocommit=True) as other:  # stands in for a running restore
        other.execute("SELECT pg_advisory_lock(%s)", (lock_key(f"restore:{db_name}"),))
        refused = run_pgshift(["restore", str(folder), "--yes"], cwd=tmp_path, url=db_url, env=_env(pg_server))
    assert refused.returncode == 14
    assert f"Another restore of {db_name} is running (pid " in refused.stderr
    assert count(db_url, "accounts") == 20


def test_latest_is_the_newest_backup_recorded_in_the_ledger_wherever_it_was_written(
    pg_server: Any, db_url: str, db_name: str, tmp_path: Path
) -> None:
    seed(db_url, rows=20)
    env = {**_env(pg_server), "PGSHIFT_BACKUP__DIRECTORY": str(tmp_path / "backups")}
    (tmp_path / "migrations").mkdir()
    assert run_pgshift(["init"], cwd=tmp_path, url=db_url, env=env).returncode == 0  # creates the ledger
    default = run_pgshift(["backup", "--json"], cwd=tmp_path, url=db_url, env=env)
    elsewhere = run_pgshift(["backup", "--to", str(tmp_path / "elsewhere"), "--json"], cwd=tmp_path, url=db_url,
                            env=env)
    assert default.returncode == 0 and elsewhere.returncode == 0, default.stderr + elsewhere.stderr
    newest = json.loads(elsewhere.stdout)["path"]
    with psycopg.connect(db_url) as conn:
        recorded = [r[0] for r in conn.execute(
            "SELECT detail->>'path' FROM pgshift.events WHERE event = 'backup' ORDER BY id").fetchall()]
    assert recorded == [str(Path(json.loads(default.stdout)["path"]).resolve()), str(Path(newest).resolve())]

    verified = run_pgshift(["backup", "verify", "latest", "--json"], cwd=tmp_path, url=db_url, env=env)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["path"] == newest
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM trades")
    try:
        restored = run_pgshift(["restore", "latest", "--yes", "--json"], cwd=tmp_path, url=db_url, env=env)
        assert restored.returncode == 0, restored.stderr
        assert json.loads(restored.stdout)["backup"] == newest
        assert count(db_url, "trades") == 300
    finally:
        with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
            for name in databases(pg_server.admin_url, f"{db_name}_pre_restore_%"):
                drop_database(admin, name)


def test_latest_skips_a_recorded_backup_that_is_gone_and_falls_back_to_the_folder(
    pg_server: Any, db_url: str, tmp_path: Path
) -> None:
    seed(db_url, rows=5)
    settings = make_settings(tmp_path, db_url, pg_server)
    with psycopg.connect(db_url, autocommit=True) as conn:
        History(conn).ensure()
    in_folder = take_backup(settings, db_url).backup.path
    gone = take_backup(settings, db_url, directory=tmp_path / "elsewhere").backup.path
    assert latest_backup(settings, db_url) == gone
    shutil.rmtree(gone)
    assert latest_backup(settings, db_url) == in_folder
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA pgshift CASCADE")  # no ledger at all: the folder still answers
    assert latest_backup(settings, db_url) == in_folder


def test_a_backup_of_a_database_without_a_ledger_leaves_it_alone_and_says_so(
    pg_server: Any, db_url: str, tmp_path: Path
) -> None:
    seed(db_url, rows=5)
    result = take_backup(make_settings(tmp_path, db_url, pg_server), db_url)
    assert result.unrecorded is not None and "no pgshift history in schema pgshift" in result.unrecorded
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regnamespace('pgshift')").fetchone() == (None,)


def test_a_restore_killed_in_its_swap_leaves_a_closed_database_that_the_rerun_reopens(
    pg_server: Any, db_url: str, db_name: str, tmp_path: Path
) -> None:
    """kill -9 between `ALLOW_CONNECTIONS false` and the renames leaves the live database closed, its
    restored copy beside it (and, a moment later, the kept copy closed): this state, reproduced here,
    must not lock the user out: the hint names the rerun, and the rerun re-opens and finishes."""
    seed(db_url, rows=20)
    settings = make_settings(tmp_path, db_url, pg_server)
    folder = take_backup(settings, db_url).backup.path
    copy, kept = f"{db_name}_restoring_20261201000000", f"{db_name}_pre_restore_20261130000000"
    (tmp_path / "migrations").mkdir()
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        for name in (copy, kept):
            admin.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        for name in (db_name, kept):
            admin.execute(psycopg.sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                psycopg.sql.Identifier(name)))
        try:
            locked_out = run_pgshift(["status"], cwd=tmp_path, url=db_url, env=_env(pg_server))
            assert locked_out.returncode == 26, locked_out.stderr
            assert "is not currently accepting connections" in locked_out.stderr
            assert "run the same command again: it re-opens the database" in locked_out.stderr

            rerun = run_pgshift(["restore", str(folder), "--yes"], cwd=tmp_path, url=db_url, env=_env(pg_server))
            assert rerun.returncode == 0, rerun.stderr
            assert f"re-opened {db_name} to new sessions: a restore killed during its swap" in rerun.stdout
            assert f"dropped database {copy}" in rerun.stdout
            assert f"re-opened {kept}, the previous data an interrupted restore kept" in rerun.stdout
            assert count(db_url, "accounts") == 20
            closed = admin.execute("SELECT datname FROM pg_database WHERE NOT datallowconn AND datname LIKE %s",
                                   (f"{db_name}%",)).fetchall()
            assert closed == []
        finally:
            for name in databases(pg_server.admin_url, f"{db_name}_%"):
                drop_database(admin, name)


def test_a_database_closed_by_someone_else_stays_closed(pg_server: Any, db_url: str, db_name: str,
                                                       tmp_path: Path) -> None:
    seed(db_url, rows=5)
    folder = take_backup(make_settings(tmp_path, db_url, pg_server), db_url).backup.path
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
            psycopg.sql.Identifier(db_name)))
        try:
            refused = run_pgshift(["restore", str(folder), "--yes"], cwd=tmp_path, url=db_url, env=_env(pg_server))
            assert refused.returncode == 26, refused.stderr
            row = admin.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (db_name,)).fetchone()
            assert row == (False,)  # no restore copy beside it: not ours to re-open
        finally:
            admin.execute(psycopg.sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                psycopg.sql.Identifier(db_name)))


def test_kill_during_restore_test_leaves_a_scratch_database_that_the_next_one_drops(
    pg_server: Any, db_url: str, db_name: str, tmp_path: Path
) -> None:
    """A kill -9 of `backup verify --restore-test` leaves its scratch database (no process is left to drop
    it); the next full verification of that database's backups drops it and says so. A scratch database
    a running verification claims, and one pgshift did not mark, are left alone."""
    from pgshift.db.scratch import CLAIM_CLASS
    from pgshift.safety.verify import SCRATCH_MARK

    seed(db_url, rows=20)
    role = f"sleep_{db_name}"
    _check_in_copies(db_url, "pgshift\\_verify\\_%", "PERFORM pg_sleep(60)", role=role)
    folder = take_backup(make_settings(tmp_path, db_url, pg_server), db_url).backup.path
    scratch_like = f"pgshift\\_verify\\_{db_name[:30]}\\_%"
    running, unmarked = (f"pgshift_verify_{db_name[:30]}_{h}" for h in ("0000000a", "0000000b"))
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin, \
            psycopg.connect(db_url, autocommit=True) as claimer:
        try:
            admin.execute(psycopg.sql.SQL("CREATE ROLE {}").format(psycopg.sql.Identifier(role)))
            proc = start_pgshift(["backup", "verify", str(folder), "--restore-test"], cwd=tmp_path, url=db_url,
                                 env=_env(pg_server))
            _wait_until(lambda: admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE %s AND wait_event = 'PgSleep'",
                (scratch_like,)).fetchone() == (1,), "the restore-test did not reach the slow check")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            admin.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(role)))
            [leftover] = databases(pg_server.admin_url, scratch_like)
            if admin.info.server_version < 140000:  # no client_connection_check_interval: the sleep runs on
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                              (leftover,))
            _wait_until(lambda: admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                              (leftover,)).fetchone() == (0,), "the killed restore's session stayed")
            # A verification still running (its claim held, from the same database), and a database pgshift
            # did not mark: neither is a leftover.
            for name in (running, unmarked):
                admin.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
            admin.execute(psycopg.sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                psycopg.sql.Identifier(running), psycopg.sql.Literal(SCRATCH_MARK)))
            claimer.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (CLAIM_CLASS, running))

            rerun = run_pgshift(["backup", "verify", str(folder), "--restore-test"], cwd=tmp_path, url=db_url,
                                env=_env(pg_server))
            assert rerun.returncode == 0, rerun.stderr
            assert f"dropped scratch database {leftover}, left behind by a verification that was killed" \
                in " ".join(rerun.stderr.split()), rerun.stderr
            assert sorted(databases(pg_server.admin_url, scratch_like)) == [running, unmarked]
        finally:
            admin.execute(psycopg.sql.SQL("DROP ROLE IF EXISTS {}").format(psycopg.sql.Identifier(role)))
            for name in databases(pg_server.admin_url, scratch_like):
                drop_database(admin, name)


def test_a_server_too_full_for_the_scratch_copy_is_not_blamed_on_the_backup(
    pg_server: Any, db_url: str, db_name: str, tmp_path: Path
) -> None:
    """The restore-test needs room for a second copy of the database on the server. When the server's disk
    fills up, the backup is not at fault: exit 15 (disk full), not 13 (the backup failed verification), a
    hint about space, and no scratch database left behind."""
    seed(db_url, rows=20)
    _check_in_copies(db_url, "pgshift\\_verify\\_%", DISK_FULL)  # only in --restore-test's scratch copy
    folder = take_backup(make_settings(tmp_path, db_url, pg_server), db_url).backup.path
    done = run_pgshift(["backup", "verify", str(folder), "--restore-test"], cwd=tmp_path, url=db_url,
                       env=_env(pg_server))
    message = " ".join(done.stderr.split())
    assert done.returncode == 15, message
    assert "error (disk-full)" in message and "the disk filled up while restoring the scratch copy" in message
    assert "No space left on device" in message and "This says nothing against the backup" in message
    assert "take a new one" not in message and "free space on the database server" in message
    assert databases(pg_server.admin_url, f"pgshift\\_verify\\_{db_name[:30]}\\_%") == []


@pytest.mark.parametrize("copies", ["pgshift\\_verify\\_%", "%\\_restoring\\_%"])
def test_a_restore_the_server_has_no_room_for_leaves_the_live_database_and_says_so(
    pg_server: Any, db_url: str, db_name: str, tmp_path: Path, copies: str
) -> None:
    """`pgshift restore` makes two copies before its swap: the verification's scratch copy, then the restored
    copy beside the live database. Either filling the disk stops the restore with exit 15 and a hint about
    space (not "choose another backup"); the live database is untouched and no copy is left."""
    seed(db_url, rows=20)
    _check_in_copies(db_url, copies, DISK_FULL)
    folder = take_backup(make_settings(tmp_path, db_url, pg_server), db_url).backup.path
    with psycopg.connect(db_url, autocommit=True) as live:
        live.execute("INSERT INTO accounts (id, owner) VALUES (100000, 'after the backup')")
    done = run_pgshift(["restore", str(folder), "--yes"], cwd=tmp_path, url=db_url, env=_env(pg_server))
    message = " ".join(done.stderr.split())
    assert done.returncode == 15, message
    assert "No space left on device" in message and f"the live database {db_name} was not touched" in message
    assert "about twice the database's size" in message and "choose another backup" not in message
    assert count(db_url, "accounts") == 21  # the row written after the backup is still there
    assert databases(pg_server.admin_url, f"{db_name}\\_%") == []
    assert databases(pg_server.admin_url, f"pgshift\\_verify\\_{db_name[:30]}\\_%") == []


def test_an_archive_that_reads_back_but_does_not_restore_here_is_not_called_for_a_new_backup(
    pg_server: Any, db_url: str, db_name: str, tmp_path: Path
) -> None:
    """The archive is intact (checksums, read-back), but the restore-test's pg_restore stops on something the
    server lacks (here a check raising what a missing extension's function would). A new backup would fail the
    same way, so the hint says what to provide instead of "take a new one"."""
    seed(db_url, rows=20)
    _check_in_copies(db_url, "pgshift\\_verify\\_%", "RAISE EXCEPTION USING ERRCODE = 'undefined_file', "
                     "MESSAGE = 'could not access file \"$libdir/postgis-3\": No such file or directory'")
    folder = take_backup(make_settings(tmp_path, db_url, pg_server), db_url).backup.path
    done = run_pgshift(["backup", "verify", str(folder), "--restore-test"], cwd=tmp_path, url=db_url,
                       env=_env(pg_server))
    message = " ".join(done.stderr.split())
    assert done.returncode == 13, message
    assert 'could not access file "$libdir/postgis-3"' in message
    assert "the archive is intact (its checksums and read-back passed) but does not restore on this server" \
        in message and "take a new one" not in message
    assert "`pgshift backup verify --restore-test --database-url <that server>`" in message, message
    assert databases(pg_server.admin_url, f"pgshift\\_verify\\_{db_name[:30]}\\_%") == []
    # `pgshift restore` verifies first: another backup would not restore either, so its hint is the same.
    done = run_pgshift(["restore", str(folder), "--yes"], cwd=tmp_path, url=db_url, env=_env(pg_server))
    message = " ".join(done.stderr.split())
    assert done.returncode != 0 and "Nothing was restored" in message, message
    assert "does not restore on this server" in message and "choose another backup" not in message
    # restore's --database-url is the database it restores over: its hint does not send it elsewhere with it.
    assert "Provide it on this server, then run `pgshift restore` again." in message and "--database-url" \
        not in message, message


def test_a_running_restore_test_s_scratch_is_not_swept_before_anything_connects_to_it(
    pg_server: Any, db_url: str, db_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between creating its scratch database and pg_restore connecting to it, a verification holds only
    its claim: another verification's sweep, in that moment, must leave the scratch alone."""
    import threading

    import pgshift.safety.verify as verify
    from pgshift.safety.manifest import read_manifest

    seed(db_url, rows=20)
    settings = make_settings(tmp_path, db_url, pg_server)
    folder = take_backup(settings, db_url).backup.path
    created, swept = threading.Event(), threading.Event()
    real_restore = verify.restore_into

    def restore_after_a_sweep(*args: Any, **kwargs: Any) -> None:
        created.set()  # the scratch exists and is marked; nothing is connected to it yet
        assert swept.wait(timeout=60)
        real_restore(*args, **kwargs)

    monkeypatch.setattr(verify, "restore_into", restore_after_a_sweep)
    result: list[Any] = []
    running = threading.Thread(target=lambda: result.append(
        verify.verify_backup(folder, full=True, url=db_url, bindir=settings.backup.pg_bindir, record=False)))
    running.start()
    try:
        assert created.wait(timeout=60)
        [scratch] = databases(pg_server.admin_url, f"pgshift\\_verify\\_{db_name[:30]}\\_%")
        other = verify.VerifyReport(folder, "full", ok=False)
        with psycopg.connect(db_url, autocommit=True) as admin:
            verify._sweep_scratch(admin, read_manifest(folder), "pgshift_verify_other_00000000", other)
        assert other.notes == [] and databases(pg_server.admin_url, scratch) == [scratch]
    finally:
        swept.set()
        running.join(timeout=120)
    assert result and result[0].ok
