"""Streaming standbys, real ones (tests/standby.py): `migrate` waiting until every standby replayed what
it applied, `check` reporting each standby and the queries a migration's ACCESS EXCLUSIVE lock would
cancel or wait for there, and what a rehearsal clone and a restore's swap cost in WAL."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from pgshift.config import BackupSettings, Settings
from pgshift.db.standbys import Standby, standbys
from pgshift.embedded import free_port
from pgshift.rehearsal.clone import Clone, make_clone
from pgshift.safety.backup import take_backup
from pgshift.safety.checks import run_checks
from pgshift.safety.restore import RestoreReport, _swap, restore_database
from tests.helpers import run_pgshift, start_pgshift, write_migration
from tests.standby import Replicated, until


def _on_standby(rep: Replicated, dbname: str, query: str) -> object:
    with psycopg.connect(rep.standby_url(dbname), autocommit=True) as conn:
        row = conn.execute(query).fetchone()
        return row[0] if row else None


def test_migrate_waits_for_a_paused_standby_and_fails_naming_it(tmp_path: Path, replicated: Replicated,
                                                               replicated_db: str) -> None:
    url = replicated.primary_url(replicated_db)
    (tmp_path / "pgshift.toml").write_text('migrations_dir = "migrations"\n[migrate]\nwait_for_standbys = "1s"\n')
    write_migration(tmp_path / "migrations", "001", "accounts", "CREATE TABLE accounts (id int PRIMARY KEY);",
                    "DROP TABLE accounts;")
    with replicated.paused_replay():
        started = time.monotonic()
        failed = run_pgshift(["migrate"], cwd=tmp_path, url=url)
        waited = time.monotonic() - started
        assert failed.returncode == 33, failed.stdout + failed.stderr
        assert "standby-not-replayed" in failed.stderr
        message = " ".join(failed.stderr.split())
        assert re.search(r"1 standby\(s\) had not replayed the migrations \(WAL position [0-9A-F]+/[0-9A-F]+\) "
                         r"within migrate.wait_for_standbys = 1s: walreceiver \(local, walsender pid \d+, "
                         r"streaming\) has replayed up to [0-9A-F]+/[0-9A-F]+, \d+ bytes short", message), message
        assert "pg_is_wal_replay_paused()" in message and "run `pgshift migrate` again" in message
        assert waited >= 1.0
        status = run_pgshift(["status", "--json"], cwd=tmp_path, url=url)
        assert json.loads(status.stdout)["migrations"][0]["state"] == "applied"  # applied stays applied
        assert _on_standby(replicated, replicated_db, "SELECT to_regclass('accounts')") is None


def test_migrate_returns_once_every_standby_replayed_the_migration(tmp_path: Path, replicated: Replicated,
                                                                  replicated_db: str) -> None:
    url = replicated.primary_url(replicated_db)
    (tmp_path / "pgshift.toml").write_text('migrations_dir = "migrations"\n[migrate]\nwait_for_standbys = "60s"\n')
    write_migration(tmp_path / "migrations", "001", "accounts", "CREATE TABLE accounts (id int PRIMARY KEY);",
                    "DROP TABLE accounts;")
    with replicated.paused_replay() as resume:
        proc = start_pgshift(["migrate"], cwd=tmp_path, url=url)
        with psycopg.connect(url, autocommit=True) as conn:  # applied on the primary, and still waiting
            until(lambda: conn.execute("SELECT to_regclass('accounts')").fetchone() != (None,), 30)
        time.sleep(1.5)
        assert proc.poll() is None
        threading.Timer(0.5, resume).start()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, out + err
        # The moment migrate returned, the standby's readers see the new schema.
        assert _on_standby(replicated, replicated_db, "SELECT to_regclass('accounts')::text") == "accounts"
    assert "waiting up to 60s for 1 standby(s) to replay" in err
    assert re.search(r"replayed on every standby: walreceiver \(local, walsender pid \d+\)", out), out
    again = run_pgshift(["migrate"], cwd=tmp_path, url=url)  # nothing pending: only waits, at once here
    assert again.returncode == 0 and "nothing to migrate" in again.stdout, again.stderr


def test_the_standby_settings_are_validated_naming_the_key(tmp_path: Path) -> None:
    cases = {
        '[migrate]\nwait_for_standbys = "soon"\n': r"migrate.wait_for_standbys in .*pgshift.toml must be a duration",
        '[backfill]\nmax_lag_bytes = "lots"\n': r"backfill.max_lag_bytes in .*pgshift.toml must be a size",
        '[backfill]\nmax_lag = true\n': r"backfill.max_lag in .*pgshift.toml must be a quoted duration",
        'standby_urls = "postgresql:///x"\nstandby_urls_typo = 1\n': r"Unknown setting 'standby_urls_typo'",
        'standby_urls = [1]\n': r"standby_urls in .*pgshift.toml must be a list of strings",
        'standby_urls = [" "]\n': r"standby_urls in .*pgshift.toml must not hold an empty URL",
    }
    for text, message in cases.items():
        (tmp_path / "pgshift.toml").write_text(text)
        result = run_pgshift(["check"], cwd=tmp_path, url="postgresql:///nowhere")
        assert result.returncode == 3, (text, result.stderr)
        assert re.search(message, " ".join(result.stderr.split())), (text, result.stderr)


def test_check_reports_each_standby_and_the_long_query_a_replayed_lock_would_cancel(
        tmp_path: Path, replicated: Replicated, replicated_db: str) -> None:
    url = replicated.primary_url(replicated_db)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, email text)")
        conn.execute("INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 100) g")
    write_migration(tmp_path / "migrations", "001", "note", "ALTER TABLE accounts ADD COLUMN note text;",
                    "ALTER TABLE accounts DROP COLUMN note;")
    replicated.wait_replayed()
    settings = Settings(database_url=url, base_dir=tmp_path, migrations_dir="migrations",
                        standby_urls=[replicated.standby_url()])
    with replicated.standby_settings(hot_standby_feedback="on", max_standby_streaming_delay="2s"):
        _long_query_cancelled_by_a_replayed_lock(tmp_path, replicated, replicated_db, url, settings)


def _long_query_cancelled_by_a_replayed_lock(tmp_path: Path, replicated: Replicated, replicated_db: str, url: str,
                                             settings: Settings) -> None:
    reader = psycopg.connect(replicated.standby_url(replicated_db), autocommit=True)
    outcome: list[BaseException | None] = []

    def long_query() -> None:
        try:
            reader.execute("SELECT count(*), pg_sleep(60) FROM accounts")
            outcome.append(None)
        except psycopg.Error as exc:
            outcome.append(exc)

    worker = threading.Thread(target=long_query, daemon=True)
    try:
        worker.start()
        with psycopg.connect(replicated.standby_url(replicated_db), autocommit=True) as conn:
            until(lambda: conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%pg_sleep(60)%%' "
                                       "AND state = 'active' AND pid <> pg_backend_pid()").fetchone() == (1,), 10)
        until(lambda: any(s.xmin is not None for s in _standbys(url)), 15)  # feedback arrives every few seconds
        results = {r.name: r for r in run_checks(settings).results}
        lag = results["replication lag"]
        assert lag.status == "passed" and lag.value == "1 standby(s)"
        shown = "\n".join(lag.detail)
        assert re.search(r"walreceiver \(local, walsender pid \d+\): streaming, [\d.]+s and [\d.]+ MB \(\d+ bytes\) "
                         r"behind, hot_standby_feedback on \(it reports an xmin\)", shown), shown
        assert re.search(r"standby \S+: hot_standby_feedback on, max_standby_streaming_delay 2s, replay running, "
                         r"\d+ bytes received and not yet replayed", shown), shown
        risky = results["standby queries safe from replayed locks"]
        assert risky.status == "warning" and risky.value == "1 at risk", risky
        text = " ".join(risky.detail)
        assert re.search(r"pid \d+ \(active, \d+s\) holds a lock on accounts: 'SELECT count\(\*\), pg_sleep\(60\) "
                         r"FROM accounts'\. Replaying the ACCESS EXCLUSIVE lock of 001 note "
                         r"\(\S+001_note.sql:2:1\) "
                         r"there waits for it up to max_standby_streaming_delay = 2s \(replay stops meanwhile\), "
                         r"then cancels it", text), text
        # Without standby_urls the standbys' queries cannot be seen: said so, and what to set.
        blind = {r.name: r for r in run_checks(Settings(database_url=url, base_dir=tmp_path,
                                                        migrations_dir="migrations")).results}
        assert blind["standby queries safe from replayed locks"].status == "warning"
        assert "set standby_urls" in " ".join(blind["standby queries safe from replayed locks"].detail)
        # And it is true: the migration's replayed lock cancels the standby's query after 2s.
        assert run_pgshift(["migrate", "--no-backup"], cwd=tmp_path, url=url).returncode == 0
        worker.join(30)
        assert outcome and isinstance(outcome[0], psycopg.Error), outcome
        assert "conflict with recovery" in str(outcome[0])
    finally:
        reader.close()


def test_check_has_nothing_to_warn_without_a_pending_access_exclusive_lock(
        tmp_path: Path, replicated: Replicated, replicated_db: str) -> None:
    url = replicated.primary_url(replicated_db)
    write_migration(tmp_path / "migrations", "001", "accounts", "CREATE TABLE accounts (id int);",
                    "DROP TABLE accounts;")
    results = {r.name: r for r in run_checks(Settings(database_url=url, base_dir=tmp_path, migrations_dir="migrations",
                                                      standby_urls=[replicated.standby_url()])).results}
    assert results["standby queries safe from replayed locks"].status == "passed"
    shown = " ".join(results["replication lag"].detail)
    assert "hot_standby_feedback off (it reports no xmin)" in shown
    assert "hot_standby_feedback off, max_standby_streaming_delay 30s" in shown


def _standbys(url: str) -> list[Standby]:
    with psycopg.connect(url, autocommit=True) as conn:
        return standbys(conn)


def _wal_position(rep: Replicated) -> int:
    with psycopg.connect(rep.primary_url(), autocommit=True) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint").fetchone()
        assert row is not None
        return int(row[0])


def _wal_of(rep: Replicated, action: Callable[[], object]) -> int:
    before = _wal_position(rep)
    action()
    return _wal_position(rep) - before


def test_wal_volume_of_a_rehearsal_clone_and_a_restore_swap(tmp_path: Path, replicated: Replicated,
                                                           replicated_db: str) -> None:
    """The figures of docs/scale.md, "Standbys": every byte of WAL is shipped to and replayed by each
    standby. Printed (run with -s to see them) and held to their order of magnitude."""
    url = replicated.primary_url(replicated_db)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, note text)")
        conn.execute("INSERT INTO accounts SELECT g, 'owner ' || g, repeat('n', 200) FROM generate_series(1, 40000) g")
        size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]
    replicated.wait_replayed()
    admin = replicated.primary_url()
    figures: dict[str, int] = {}
    clones: list[str] = []

    def clone(strategy: str) -> None:
        name = f"{replicated_db}_{strategy.lower()}"
        clones.append(name)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY {}").format(
                sql.Identifier(name), sql.Identifier(replicated_db), sql.SQL(strategy)))

    settings = Settings(database_url=url, base_dir=tmp_path,
                        backup=BackupSettings(directory=str(tmp_path / "backups"),
                                              pg_bindir=str(replicated.primary.bindir)))
    try:
        made: list[Clone] = []
        figures["rehearsal clone (CREATE DATABASE ... STRATEGY FILE_COPY)"] = _wal_of(
            replicated, lambda: made.append(make_clone(url)))
        assert made[0].method == "template-file-copy"
        clones.append(made[0].name)
        figures["CREATE DATABASE ... STRATEGY WAL_LOG (PostgreSQL 15's default)"] = _wal_of(
            replicated, lambda: clone("WAL_LOG"))
        with psycopg.connect(url):  # a session on the source: rehearsal copies it with pg_dump | pg_restore
            figures["rehearsal clone by pg_dump | pg_restore (the source had sessions)"] = _wal_of(
                replicated, lambda: made.append(make_clone(url)))
        assert made[1].method == "pg_dump"
        clones.append(made[1].name)
        backup = take_backup(settings, url).backup
        reports: list[RestoreReport] = []
        figures["restore: verify, restore beside the live database, swap"] = _wal_of(
            replicated, lambda: reports.append(restore_database(settings, backup.path, url)))
        assert reports[0].ok and reports[0].kept_as
        clones.append(reports[0].kept_as)
        live, fresh, kept = (f"{replicated_db}_{suffix}" for suffix in ("live", "fresh", "kept"))
        clones += [live, kept]
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in (live, fresh):
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        figures["restore's swap alone (two ALTER DATABASE ... RENAME)"] = _wal_of(
            replicated, lambda: _swap(admin, live, fresh, kept, settings))
        replicated.wait_replayed()
        # The standby has every copy, whole: the file copy is replayed as a copy of its own template.
        assert _on_standby(replicated, made[0].name, "SELECT count(*) FROM accounts") == 40_000
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in clones:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    print(f"\nWAL written on a primary with one streaming standby, database of {size / 1e6:.1f} MB "
          "(full_page_writes = off in the test cluster):")
    for what, wal in figures.items():
        print(f"  {what}: {wal / 1e6:.2f} MB ({wal} bytes) of WAL, {wal / size:.2f}x the database")
    assert figures["rehearsal clone (CREATE DATABASE ... STRATEGY FILE_COPY)"] < size / 50
    assert figures["CREATE DATABASE ... STRATEGY WAL_LOG (PostgreSQL 15's default)"] > size * 0.5
    assert figures["rehearsal clone by pg_dump | pg_restore (the source had sessions)"] > size * 0.5
    assert figures["restore: verify, restore beside the live database, swap"] > size * 0.5
    assert figures["restore's swap alone (two ALTER DATABASE ... RENAME)"] < 64 * 1024


def test_check_reads_the_locks_of_an_operations_migrations_expand_steps(
        tmp_path: Path, replicated: Replicated, replicated_db: str) -> None:
    url = replicated.primary_url(replicated_db)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, email text)")
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "001_flag.ops.yaml").write_text(
        "schema: public\noperations:\n  - add_column:\n      table: accounts\n"
        "      column: {name: flag, type: int, default: '0', nullable: false}\n      up: \"0\"\n")
    replicated.wait_replayed()
    with psycopg.connect(replicated.standby_url(replicated_db)) as reader:
        reader.execute("SELECT count(*) FROM accounts")  # idle in transaction, holding its lock
        results = {r.name: r for r in run_checks(Settings(
            database_url=url, base_dir=tmp_path, migrations_dir="migrations",
            standby_urls=[replicated.standby_url()])).results}
    risky = results["standby queries safe from replayed locks"]
    assert risky.status == "warning", risky
    assert re.search(r"pid \d+ \(idle in transaction, \d+s\) holds a lock on public.accounts: 'SELECT count\(\*\) "
                     r"FROM accounts'\. Replaying the ACCESS EXCLUSIVE lock of 001 flag \(expand step '[^']+'\)",
                     " ".join(risky.detail)), risky.detail


def test_check_warns_of_a_standby_url_that_is_no_standby_or_cannot_be_reached(
        tmp_path: Path, replicated: Replicated, replicated_db: str) -> None:
    url = replicated.primary_url(replicated_db)
    unreachable = f"postgresql://nobody:secret@127.0.0.1:{free_port()}/x?connect_timeout=2"
    with replicated.paused_replay():
        results = {r.name: r for r in run_checks(Settings(
            database_url=url, base_dir=tmp_path, standby_urls=[replicated.standby_url(), url, unreachable])).results}
    lag = results["replication lag"]
    shown = "\n".join(lag.detail)
    assert lag.status == "warning", lag
    assert re.search(r"standby \S+: hot_standby_feedback off, max_standby_streaming_delay 30s, replay PAUSED "
                     r"\(pg_wal_replay_resume\(\) resumes it\)", shown), shown
    assert f"standby {url} (standby_urls) is not a standby: it is not in recovery" in shown
    assert "(standby_urls): cannot connect:" in shown and "secret" not in shown and "nobody:***@" in shown


def test_check_fails_when_the_configured_standbys_do_not_stream_from_the_server(
        tmp_path: Path, replicated: Replicated, db_url: str) -> None:
    """The test cluster has no standby: the one standby_urls names streams from another server."""
    results = {r.name: r for r in run_checks(Settings(database_url=db_url, base_dir=tmp_path,
                                                      standby_urls=[replicated.standby_url()])).results}
    lag = results["replication lag"]
    assert lag.status == "failed" and lag.value == "0 standby(s)", lag
    assert "standby_urls names 1 standby(s), but none streams from this server now" in lag.detail


def test_waiting_for_standbys_is_refused_when_the_role_cannot_see_them(tmp_path: Path, replicated: Replicated,
                                                                      replicated_db: str) -> None:
    (tmp_path / "pgshift.toml").write_text('migrations_dir = "migrations"\n[migrate]\nwait_for_standbys = "30s"\n')
    write_migration(tmp_path / "migrations", "001", "accounts", "CREATE TABLE accounts (id int PRIMARY KEY);",
                    "DROP TABLE accounts;")
    with replicated.plain_role(replicated_db) as url:
        started = time.monotonic()
        result = run_pgshift(["migrate"], cwd=tmp_path, url=url)
        assert time.monotonic() - started < 25  # refused at once, not after the wait
        assert result.returncode == 33, result.stdout + result.stderr
        message = " ".join(result.stderr.split())
        assert re.search(r"migrate.wait_for_standbys = 30s asks to wait until every standby replayed the migrations, "
                         r"but the role plain_\w+ cannot see the standbys' positions", message), message
        assert "GRANT pg_monitor TO plain_" in message


def test_check_says_when_the_role_cannot_see_the_standbys(tmp_path: Path, replicated: Replicated,
                                                          replicated_db: str) -> None:
    with replicated.plain_role(replicated_db) as url:
        lag = {r.name: r for r in run_checks(Settings(database_url=url, base_dir=tmp_path)).results}["replication lag"]
    assert lag.status == "warning", lag
    assert re.search(r"the role plain_\w+ lacks pg_read_all_stats .* the figures above are not measured",
                     " ".join(lag.detail)), lag.detail


def test_waiting_for_standbys_on_a_server_without_any_says_so(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "pgshift.toml").write_text('migrations_dir = "migrations"\n[migrate]\nwait_for_standbys = "30s"\n')
    write_migration(tmp_path / "migrations", "001", "accounts", "CREATE TABLE accounts (id int);",
                    "DROP TABLE accounts;")
    result = run_pgshift(["migrate"], cwd=tmp_path, url=db_url)
    assert result.returncode == 0, result.stderr
    assert "no standby streams from this server now: nothing to wait for" in result.stderr
    assert "replayed on every standby" not in result.stdout


def test_check_fails_when_database_url_is_a_standby(tmp_path: Path, replicated: Replicated, replicated_db: str) -> None:
    write_migration(tmp_path / "migrations", "001", "t", "CREATE TABLE t (id int);")
    replicated.wait_replayed()
    settings = Settings(database_url=replicated.standby_url(replicated_db), base_dir=tmp_path,
                        migrations_dir="migrations")
    [writable] = [r for r in run_checks(settings).results if r.name == "server accepts writes"]
    assert (writable.status, writable.value) == ("failed", "a standby (database_url points at a server in recovery)")
    assert writable.detail == ["migrate would fail at its first write: point database_url at the primary"]
