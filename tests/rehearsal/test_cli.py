"""`pgshift rehearse` from the command line: exit codes, JSON, the HTML report in a real
browser, the demo function, and the clone dropped after Ctrl-C / SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from pgshift.rehearsal.demo import naive_vs_safe
from tests.helpers import database_owner_role
from tests.rehearsal.conftest import clones_of, state, write_migrations
from tests.rehearsal.test_rehearse import NAIVE, REVERSIBLE

Conn = psycopg.Connection[tuple[object, ...]]
PGSHIFT = [sys.executable, "-c", "from pgshift.cli.main import main; main()"]
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p and os.access(p, os.X_OK)), None)


def _run(args: list[str], tmp_path: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
        [*PGSHIFT, *args], capture_output=True, text=True, cwd=tmp_path, timeout=120, **kwargs
    )
    return result


def test_cli_json_pass_and_fail_exit_codes(source: Conn, db_url: str, tmp_path: Path) -> None:
    folder = write_migrations(tmp_path / "ok", REVERSIBLE)
    done = _run(["rehearse", "-d", db_url, "--dir", str(folder), "--json", "--load", "50"], tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["version"] == 1 and data["verdict"] == "pass" and data["reasons"] == []
    assert data["clone"]["method"] == "template-file-copy" and data["clone"]["kept"] is False
    assert data["workload"]["queries"] > 0 and "samples" not in data["workload"]
    assert {"phase", "sql", "where", "duration_ms", "locks", "rewrites", "rows_affected",
            "worst_latency_ms", "workload_errors"} <= set(data["statements"][0])

    bad = write_migrations(tmp_path / "bad", {"1_i.sql": "CREATE INDEX items_qty_idx ON items (qty);\n"
                                                         "-- pgshift:down\n"})
    failed = _run(["rehearse", "-d", db_url, "--dir", str(bad)], tmp_path)
    assert failed.returncode == 18
    assert "verdict: fail" in failed.stdout and "+ index public.items_qty_idx" in failed.stdout
    assert "(rehearsal)" in failed.stderr and "public.items_qty_idx" in failed.stderr


def _wait_for(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_clone_is_dropped_on_ctrl_c_and_sigterm(source: Conn, db_name: str, db_url: str, tmp_path: Path,
                                                signum: int) -> None:
    before = state(db_url)
    folder = write_migrations(tmp_path / "m", {"1_slow.sql": "SELECT pg_sleep(60);\n-- pgshift:down\n"})
    proc = subprocess.Popen([*PGSHIFT, "rehearse", "-d", db_url, "--dir", str(folder), "--load", "20"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def sleeping() -> bool:
            row = source.execute("SELECT count(*) FROM pg_stat_activity WHERE datname LIKE %s AND query LIKE %s",
                                 (f"pgshift_rehearsal_{db_name}%", "SELECT pg_sleep(60)%")).fetchone()
            return bool(row and row[0])

        _wait_for(sleeping)
        proc.send_signal(signum)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err.lower()
    assert clones_of(source, db_name) == []
    assert state(db_url) == before


def test_html_report_renders_in_headless_chromium(source: Conn, db_url: str, tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("no chromium binary (apt-get install chromium): cannot render the HTML report in a browser")
    folder = write_migrations(tmp_path / "m", NAIVE)
    report_file = tmp_path / "report.html"
    done = _run(["rehearse", "-d", db_url, "--dir", str(folder), "--load", "100", "--stall-budget", "300ms",
                 "--html", str(report_file)], tmp_path)
    assert done.returncode == 18, done.stderr
    text = report_file.read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + str(tmp_path / "chr")]
    dom = subprocess.run([*browser, "--dump-dom", report_file.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert 'data-rendered="1"' in dom  # the inline script ran
    # One band per phase that ran (up, down, up-again), one bar per statement of each.
    assert '<svg id="timeline"' in dom and 'class="q"' in dom
    assert dom.count('class="phase"') == 3 and dom.count('class="stmt"') == 3, dom.count('class="stmt"')
    assert 'id="verdict" class="verdict fail">Verdict: FAIL' in dom
    assert "stalled the workload" in dom and "SHARE on public.items" in dom
    shot = tmp_path / "report.png"
    subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1100,1400", "--hide-scrollbars",
                    report_file.as_uri()], capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if os.environ.get("PGSHIFT_TEST_SCREENSHOT"):
        shutil.copy(shot, os.environ["PGSHIFT_TEST_SCREENSHOT"])


def test_demo_naive_fails_and_safe_passes(source: Conn, db_url: str) -> None:
    result = naive_vs_safe(db_url, rows=700)
    assert result.naive.verdict == "fail" and [r.code for r in result.naive.reasons] == ["stall"]
    assert result.safe.verdict == "pass", result.safe.reasons


def test_a_table_locked_by_another_session_stops_the_clone_within_lock_wait(
    source: Conn, db_name: str, db_url: str, tmp_path: Path
) -> None:
    folder = write_migrations(tmp_path / "ok", REVERSIBLE)
    with psycopg.connect(db_url) as stuck:  # another session, so the clone is made with pg_dump
        stuck.execute("SET idle_in_transaction_session_timeout = '30s'")  # a regression fails, not hangs
        stuck.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        done = _run(["rehearse", "-d", db_url, "--dir", str(folder)], tmp_path,
                    env={**os.environ, "PGSHIFT_LOCK_WAIT": "300ms"})
    assert done.returncode == 18, done.stderr
    assert "table public.items stayed locked by another session for longer than lock_wait (300 ms)" in done.stderr
    assert clones_of(source, db_name) == []  # the half-made clone was dropped


def _pg_dump_processes(db_name: str) -> list[int]:
    """OS pg_dump processes reading this test's database (their argv names it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"pg_dump") and any(db_name.encode() in a for a in argv):
            pids.append(int(entry.name))
    return pids


def test_kill_9_during_the_copy_takes_pg_dump_with_it_and_the_next_rehearse_drops_the_clone(
    source: Conn, db_name: str, db_url: str, tmp_path: Path
) -> None:
    folder = write_migrations(tmp_path / "ok", REVERSIBLE)
    env = {**os.environ, "PGSHIFT_LOCK_WAIT": "60s"}
    with psycopg.connect(db_url) as stuck:  # another session, so the clone is made with pg_dump, which waits
        stuck.execute("SET idle_in_transaction_session_timeout = '60s'")
        stuck.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        proc = subprocess.Popen([*PGSHIFT, "rehearse", "-d", db_url, "--dir", str(folder)], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            def dumping() -> bool:
                row = source.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                     "AND application_name = 'pg_dump' AND wait_event_type = 'Lock'",
                                     (db_name,)).fetchone()
                return bool(row and row[0])

            _wait_for(dumping)
            leftovers = clones_of(source, db_name)
            assert len(leftovers) == 1
            proc.kill()
            proc.wait(timeout=10)

            def dump_gone() -> bool:
                row = source.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                     "AND application_name = 'pg_dump'", (db_name,)).fetchone()
                return not (row and row[0]) and not _pg_dump_processes(db_name)

            _wait_for(dump_gone, timeout=5)  # while the lock is still held: nothing waits on it any more
        finally:
            if proc.poll() is None:
                proc.kill()
            for pid in _pg_dump_processes(db_name):  # a regression must not leak into other tests
                os.kill(pid, signal.SIGKILL)
    assert clones_of(source, db_name) == leftovers  # the half-made clone is still there ...
    done = _run(["rehearse", "-d", db_url, "--dir", str(folder)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"dropped clone {leftovers[0]} left behind by a rehearse that was killed" in done.stdout + done.stderr
    assert clones_of(source, db_name) == []  # ... until the next rehearse drops it


def test_the_sweep_leaves_clones_of_running_and_kept_rehearsals(source: Conn, db_name: str, db_url: str) -> None:
    from pgshift.db.connect import with_dbname
    from pgshift.db.scratch import CLAIM_CLASS
    from pgshift.rehearsal.clone import IN_PROGRESS, KEPT, sweep_leftover_clones

    running, kept, used = (f"pgshift_rehearsal_{db_name[:30]}_{h}" for h in ("0000000a", "0000000b", "0000000c"))
    for name, comment in ((running, IN_PROGRESS), (kept, KEPT), (used, IN_PROGRESS)):
        source.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        source.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(comment)))
    try:
        # A running rehearse holds its claim on the maintenance database, as claimed_name does.
        with psycopg.connect(with_dbname(db_url, "postgres"), autocommit=True) as claim, \
                psycopg.connect(with_dbname(db_url, used)) as user_of_clone:
            claim.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (CLAIM_CLASS, running))
            user_of_clone.execute("SELECT 1")
            assert sweep_leftover_clones(db_url) == []
        _wait_for(lambda: source.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                         (used,)).fetchone() == (0,))
        assert sorted(sweep_leftover_clones(db_url)) == [running, used]
        assert clones_of(source, db_name) == [kept]
    finally:
        for name in (running, kept, used):
            source.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.parametrize("copy", ["template", "pg_dump"])
def test_the_clone_carries_the_source_database_s_own_settings(source: Conn, db_name: str, db_url: str,
                                                              tmp_path: Path, copy: str) -> None:
    """No copy of a database takes its ALTER DATABASE / ALTER ROLE ... IN DATABASE settings along: a date
    typed day first, valid under the source's DateStyle, failed the rehearsal; a list setting keeps its
    elements apart."""
    role = str(source.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]
    for statement in ("ALTER DATABASE {db} SET DateStyle = 'SQL, DMY'",
                      "ALTER DATABASE {db} SET search_path = '$user', public, 'My Schema'",
                      "ALTER ROLE {role} IN DATABASE {db} SET statement_timeout = '7s'"):
        source.execute(sql.SQL(statement).format(db=sql.Identifier(db_name), role=sql.Identifier(role)))
    folder = write_migrations(tmp_path / "m", {
        "1_dates.sql": "CREATE TABLE days (d date);\nINSERT INTO days VALUES ('13/02/2026');\n"
                       "-- pgshift:down\nDROP TABLE days;\n"})
    other = psycopg.connect(db_url) if copy == "pg_dump" else None  # a session on the source: pg_dump copies it
    try:
        done = _run(["rehearse", "-d", db_url, "--dir", str(folder), "--keep"], tmp_path)
    finally:
        if other is not None:
            other.close()
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "the source database's own settings carried over: DateStyle, search_path, statement_timeout " \
           f"(role {role})" in " ".join(done.stdout.split()), done.stdout
    [clone] = clones_of(source, db_name)
    try:
        rows = source.execute(
            "SELECT coalesce(r.rolname, ''), s.setconfig FROM pg_db_role_setting s JOIN pg_database d "
            "ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE d.datname = %s ORDER BY 1",
            (clone,)).fetchall()
        assert rows == [("", ["DateStyle=SQL, DMY", 'search_path="$user", public, "My Schema"']),
                        (role, ["statement_timeout=7s"])], rows
        assert ("pg_dump" in done.stdout) == (copy == "pg_dump"), done.stdout
    finally:
        source.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(clone)))
        source.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(sql.Identifier(role),
                                                                                sql.Identifier(db_name)))


def test_a_copy_by_pg_dump_that_row_level_security_would_cut_short_is_refused_before_any_clone(
        source: Conn, db_name: str, db_url: str, tmp_path: Path) -> None:
    """A busy source is copied with pg_dump, which refuses a table whose rows policies would hide from
    the role (here its own, with FORCE ROW LEVEL SECURITY): said up front, with the BYPASSRLS to ask for,
    and no clone made."""
    with psycopg.connect(db_url, autocommit=True) as conn, \
            database_owner_role(conn, db_name, db_url, "tenant", owns_public=True) as url:
        with psycopg.connect(url, autocommit=True) as owner:
            owner.execute("CREATE TABLE docs (id int PRIMARY KEY, tenant text); ALTER TABLE docs ENABLE ROW LEVEL "
                          "SECURITY; ALTER TABLE docs FORCE ROW LEVEL SECURITY; CREATE POLICY mine ON docs "
                          "USING (tenant = current_user)")
            role = sql.Identifier(str(conninfo_to_dict(url)["user"]))
            conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(role))
            # The fixture's tables belong to another role: readable, so only the policy is in the way.
            conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {0}; GRANT SELECT ON ALL "
                                 "SEQUENCES IN SCHEMA public TO {0}").format(role))
            folder = write_migrations(tmp_path / "m", {"1_a.sql": "CREATE TABLE a (id int);\n-- pgshift:down\n"
                                                                  "DROP TABLE a;\n"})
            done = _run(["rehearse", "-d", url, "--dir", str(folder)], tmp_path)  # `owner` is connected: pg_dump
        message = " ".join(done.stderr.split())
        assert done.returncode == 27, message
        assert "The rehearsal's copy of the database (pg_dump | pg_restore" in message, message
        assert "public.docs (owner" in message and "FORCE ROW LEVEL SECURITY" in message, message
        assert "no clone was made" in message and "BYPASSRLS" in message, message
        assert clones_of(source, db_name) == []


def test_from_backup_takes_a_backup_as_backup_verify_and_restore_do(source: Conn, db_url: str,
                                                                    tmp_path: Path) -> None:
    """`--from-backup latest` or a folder's name in backup.directory, as `backup verify` and `restore` take
    them (it used to want a path, and said "Path 'latest' does not exist"); a name that is no backup is
    exit 13 with what to name instead."""
    folder = write_migrations(tmp_path / "m", REVERSIBLE)
    env = {**os.environ, "PGSHIFT_BACKUP__DIRECTORY": str(tmp_path / "backups")}
    made = _run(["backup", "-d", db_url], tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    [backup] = (tmp_path / "backups").iterdir()
    for name in ("latest", backup.name):
        done = _run(["rehearse", "-d", db_url, "--dir", str(folder), "--from-backup", name], tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        assert f"restored from {backup}" in " ".join(done.stdout.split()), done.stdout
    missing = _run(["rehearse", "-d", db_url, "--dir", str(folder), "--from-backup", "nope"], tmp_path, env=env)
    assert missing.returncode == 13, missing.stderr
    assert "No backup named nope" in missing.stderr and "`pgshift backup list`" in missing.stderr
