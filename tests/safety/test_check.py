"""pgshift check: every checklist item shown passing and failing, on a real server."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from pgshift import api
from pgshift.cli.main import cli
from pgshift.config import Settings
from pgshift.runner import violations
from pgshift.safety import take_backup
from pgshift.safety.checks import Thresholds, run_checks, touched_tables
from pgshift.units import Duration
from tests.helpers import check_result, run_pgshift, write_migration

from .helpers import HealthServer, make_settings

Conn = psycopg.Connection[Any]

INIT = "CREATE TABLE accounts (id int PRIMARY KEY, balance numeric);\nINSERT INTO accounts VALUES (1, 2), (2, 3);\n"
SAFE = "-- pgshift:no-transaction\nCREATE INDEX CONCURRENTLY accounts_balance ON accounts (balance);\n"
# Rewrites accounts (free disk space), and renames a column the running app reads: an error at
# any table size (the type change alone is a note on a 2-row table, for check as for migrate).
# and adds a CHECK the row (2, 3) already violates (existing rows).
UNSAFE = ("ALTER TABLE accounts ADD CONSTRAINT small_balance CHECK (balance < 3);\n"
          "ALTER TABLE accounts ALTER COLUMN balance TYPE text;\n"
          "ALTER TABLE accounts RENAME COLUMN balance TO amount;\n")


def _project(tmp_path: Path, db_url: str, pg_server: Any, pending: str) -> Settings:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "1_init.sql").write_text(INIT)
    settings = dataclasses.replace(make_settings(tmp_path, db_url, pg_server), migrations_dir=str(migrations))
    api.migrate(settings)
    (migrations / "2_next.sql").write_text(pending)
    return settings


def _git(tmp_path: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                   check=True, capture_output=True)


def _by_name(checklist: Any) -> dict[str, Any]:
    return {r.name: r for r in checklist.results}


@pytest.fixture
def health_ok() -> Iterator[HealthServer]:
    server = HealthServer(200)
    yield server
    server.close()


def test_every_check_passes_on_a_ready_project(
    pg_server: Any, db_url: str, tmp_path: Path, health_ok: HealthServer
) -> None:
    settings = _project(tmp_path, db_url, pg_server, SAFE)
    take_backup(settings, db_url)
    (tmp_path / "VERSION").write_text("1.4.2\n")
    settings = dataclasses.replace(settings, app=dataclasses.replace(settings.app, version_file="VERSION",
                                                                     health_url=health_ok.url))
    (tmp_path / ".gitignore").write_text("backups/\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "x")
    checklist = run_checks(settings)
    results = _by_name(checklist)
    assert {r.status for r in checklist.results} == {"passed"}, [(r.name, r.status, r.detail) for r in
                                                                  checklist.results]
    assert results["application version"].value == "1.4.2"
    assert results["pending migrations"].detail == ["2 next"]
    assert "ms round trip" in results["database answers"].value
    assert "GB free" in results["free disk space"].value and "1 rewritten" in results["free disk space"].value
    assert results["replication lag"].value == "no standbys"
    assert results["standby queries safe from replayed locks"].value == "no standbys"
    config = tmp_path / "pgshift.toml"
    config.write_text(f'migrations_dir = "migrations"\n[backup]\ndirectory = "{settings.backup.directory}"\n'
                      f'[app]\nversion_file = "VERSION"\nhealth_url = "{health_ok.url}"\n')
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "config")
    runner = CliRunner()
    out = runner.invoke(cli, ["check", "--config", str(config), "-d", db_url])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert lines[-1].startswith("checklist: 19 passed, 0 failed")
    out = runner.invoke(cli, ["check", "--config", str(config), "-d", db_url, "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["passed"] == 19


def test_every_check_fails_when_it_should(pg_server: Any, db_name: str, db_url: str, tmp_path: Path) -> None:
    settings = _project(tmp_path, db_url, pg_server, UNSAFE)
    (tmp_path / "migrations" / "1_init.sql").write_text(INIT + "-- edited after it was applied\n")
    bad_health = HealthServer(503)
    settings = dataclasses.replace(settings, app=dataclasses.replace(
        settings.app, version_command=[sys.executable, "-c", "import sys; sys.exit(3)"], health_url=bad_health.url))
    _git(tmp_path, "init", "-q")  # untracked files: not clean
    wal = tmp_path / "wal"
    wal.mkdir()
    assert pg_server.cluster is not None
    bindir = Path(pg_server.cluster.bindir)
    admin = pg_server.admin_url
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE dup (x int)")
        conn.execute("INSERT INTO dup VALUES (1), (1)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY dup_x ON dup (x)")  # leaves an INVALID index
    idle = psycopg.connect(db_url)
    idle.execute("SELECT * FROM accounts")  # idle in transaction, holding a lock on accounts
    locker = psycopg.connect(db_url)
    locker.execute("LOCK TABLE dup IN ACCESS EXCLUSIVE MODE")  # so pg_dump waits, still running
    dump = subprocess.Popen([str(bindir / "pg_dump"), f"--dbname={db_url}", "--file=/dev/null"],
                            stderr=subprocess.DEVNULL)
    receiver = subprocess.Popen([str(bindir / "pg_receivewal"), "-D", str(wal), f"--dbname={admin}",
                                 "--no-loop"], stderr=subprocess.DEVNULL)
    try:
        _wait_for(db_url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'")
        _wait_for(db_url, "SELECT count(*) FROM pg_stat_replication")
        checklist = run_checks(settings, Thresholds(max_lag_bytes=-1, disk_factor=1e12))
    finally:
        for proc in (dump, receiver):
            proc.terminate()
            proc.wait()
        idle.close()
        locker.close()
        bad_health.close()
    results = _by_name(checklist)
    expect_failed = ["recent verified backup", "no pg_dump running", "no migration edited after being applied",
                     "lint passes lint.fail_level", "existing rows meet the pending constraints", "free disk space",
                     "no sessions blocking DDL", "replication lag",
                     "no INVALID indexes", "application version", "application health URL",
                     "git working tree clean"]
    for name in expect_failed:
        assert results[name].status == "failed", (name, results[name])
    assert "accounts" in " ".join(results["no sessions blocking DDL"].detail)
    assert "dup_x" in " ".join(results["no INVALID indexes"].detail)
    assert "PS017 rename-column" in " ".join(results["lint passes lint.fail_level"].detail)
    assert "503" in results["application health URL"].value
    assert "1 row violates small_balance in \"public\".\"accounts\", e.g. id = 2" in \
        " ".join(results["existing rows meet the pending constraints"].detail)
    assert not checklist.ok and checklist.summary().startswith("checklist: 6 passed, 12 failed")


def _wait_for(url: str, query: str) -> None:
    deadline = time.monotonic() + 15
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(query).fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {query}")


def test_unreachable_database_and_missing_migrations_fail(
    pg_server: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = dataclasses.replace(make_settings(tmp_path, db_url, pg_server), migrations_dir=str(tmp_path / "nowhere"))
    results = _by_name(run_checks(settings))
    assert results["pending migrations"].status == "failed"
    assert "does not exist" in results["pending migrations"].detail[0]
    unreachable = "postgresql://nobody@127.0.0.1:1/x?connect_timeout=2"
    settings = dataclasses.replace(settings, database_url=unreachable)
    checklist = run_checks(settings)
    assert _by_name(checklist)["database answers"].status == "failed"
    monkeypatch.chdir(tmp_path)  # not inside a git repository
    out = CliRunner().invoke(cli, ["check", "-d", unreachable, "--dir", str(tmp_path)])
    assert out.exit_code == 1 and out.output.strip().splitlines()[-1].startswith("checklist: 0 passed, 1 failed")


def test_touched_and_rewritten_tables() -> None:
    from pgshift.migrations.model import SqlMigration
    from pgshift.migrations.splitter import split_sql

    text = ("ALTER TABLE a.t ALTER COLUMN x TYPE bigint; CREATE INDEX i ON u (x); VACUUM FULL v; "
            "ALTER TABLE w ADD COLUMN y int; CLUSTER z")
    m = SqlMigration(version="1", name="x", path=Path("x.sql"), up=split_sql(text), down=None, checksum="c",
                  source_format="native")
    touched, rewritten = touched_tables([m])
    assert rewritten == {"a.t", "u", "v", "z"}
    assert touched == {"a.t", "u", "v", "w", "z"}


def test_a_table_locked_by_a_stuck_migration_is_reported_not_waited_for(
    pg_server: Any, db_url: str, tmp_path: Path
) -> None:
    settings = _project(tmp_path, db_url, pg_server, UNSAFE)  # the pending migration rewrites accounts
    stuck = psycopg.connect(db_url)
    stuck.execute("SET idle_in_transaction_session_timeout = '20s'")  # a regression fails, not hangs
    stuck.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")  # sizing it would wait behind this
    try:
        started = time.monotonic()
        results = _by_name(run_checks(settings))
        seconds = time.monotonic() - started
    finally:
        stuck.close()
    assert seconds < 15
    assert results["no sessions blocking DDL"].status == "failed"
    assert "accounts" in " ".join(results["no sessions blocking DDL"].detail)
    assert "1 rewritten table(s)" in results["free disk space"].value  # sized from the catalog instead


def test_check_on_a_large_data_migration_finds_its_tables_without_parsing_its_inserts(
    pg_server: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgshift.migrations import analysis, tree
    from pgshift.rehearsal.workload import touched_tables as workload_tables

    pad = "x" * 40
    rows = ",\n".join(f"({{i}}{r}, 'note {pad}')" for r in range(40))
    inserts = "".join("INSERT INTO seed (id, note) VALUES\n" + rows.format(i=i) + ";\n" for i in range(1000))
    big = ("CREATE TABLE seed (id bigint PRIMARY KEY, note text);\nCREATE TABLE audit (n int);\n" + inserts
           + "INSERT INTO seed VALUES ((SELECT count(*) FROM audit), 'counted');\n"
           + "ALTER TABLE accounts ALTER COLUMN balance TYPE text;\nCREATE INDEX seed_note ON seed (note);\n")
    assert len(big) > 2_000_000
    settings = _project(tmp_path, db_url, pg_server, big)
    parsed: list[int] = []  # the length of each text parsed into a tree
    real = tree.parse

    def counting(sql: str) -> Any:
        parsed.append(len(sql))
        return real(sql)

    # The statement analysis parses one text at a time with tree.parse (lint parses in batches).
    monkeypatch.setattr(tree, "parse", counting)
    analysis.analyse_all.cache_clear()
    results = _by_name(run_checks(settings))
    assert results["pending migrations"].detail == ["2 next"]
    assert results["free disk space"].detail == ["accounts", "seed"]
    pending = api.status(settings).pending
    assert touched_tables(list(pending)) == ({"seed", "audit", "accounts"}, {"seed", "accounts"})
    # rehearse's workload runs against every table named, also inside an INSERT's subquery.
    assert workload_tables(pending) == {(None, "seed"), (None, "audit"), (None, "accounts")}
    # Only INSERT heads (to VALUES) and the few other statements were parsed into trees, never the rows.
    assert parsed and max(parsed) < 200, max(parsed)
    assert sum(parsed) < 0.1 * len(big), sum(parsed)


def _flush_stats(conn: psycopg.Connection[Any]) -> None:
    """Make this session's row counts visible in pg_stat_* now (they are flushed at most once a second)."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")


def test_stale_statistics_of_a_table_a_pending_migration_changes_are_a_warning(
    pg_server: Any, db_url: str, tmp_path: Path
) -> None:
    settings = _project(tmp_path, db_url, pg_server, "UPDATE accounts SET balance = 0 WHERE balance IS NULL;\n"
                        "ALTER TABLE \"Big\" ADD COLUMN note text;\n")
    name = "table statistics fresh"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute('CREATE TABLE "Big" (id int) WITH (autovacuum_enabled = false)')
        conn.execute("CREATE TABLE untouched (id int) WITH (autovacuum_enabled = false)")
        conn.execute("ALTER TABLE accounts SET (autovacuum_enabled = false)")
        conn.execute("INSERT INTO accounts SELECT g, g FROM generate_series(3, 1000) g")
        _flush_stats(conn)  # counted before the ANALYZE that resets the count
        conn.execute("ANALYZE accounts")
        conn.execute('INSERT INTO "Big" SELECT generate_series(1, 500)')
        conn.execute("INSERT INTO untouched SELECT generate_series(1, 500)")
        _flush_stats(conn)
        result = _by_name(run_checks(settings))[name]
        # accounts was analysed and barely changed since; "Big" has 500 rows and was never analysed.
        assert (result.status, result.value) == ("warning", "1 of 2 stale"), result
        assert result.detail == ['public."Big": 500 rows changed and never analysed, against 0 rows estimated; '
                                 'run `ANALYZE public."Big"` before migrating']
        conn.execute("UPDATE accounts SET balance = balance + 1")  # 1000 changes against 1000 rows estimated
        _flush_stats(conn)
        result = _by_name(run_checks(settings))[name]
        assert result.value == "2 of 2 stale" and "public.accounts: 1000 rows changed since its last ANALYZE at" \
            in result.detail[1], result
        conn.execute('ANALYZE accounts, "Big"')
        result = _by_name(run_checks(settings))[name]
        assert (result.status, result.value) == ("passed", "2 table(s) analysed recently enough"), result


def test_a_session_holding_a_table_with_a_quoted_name_blocks(tmp_path: Path, db_url: str) -> None:
    """The held relations are compared by schema and name, not by the server's quoted spelling, so a
    mixed-case table or one in another schema is not missed."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute('CREATE TABLE "Acct" (id int); CREATE SCHEMA "Sales"; CREATE TABLE "Sales"."Orders" (id int)')
        conn.execute('CREATE TABLE "Sales"."Acct" (id int)')  # not the "Acct" the search path finds
    write_migration(tmp_path / "migrations", "1", "alter", 'ALTER TABLE "Acct" ADD COLUMN note text;\n'
                    'ALTER TABLE "Sales"."Orders" ADD COLUMN note text;')

    def sessions() -> dict[str, Any]:
        return check_result("no sessions blocking DDL", cwd=tmp_path, url=db_url)

    with psycopg.connect(db_url) as idle:
        idle.execute('SELECT * FROM "Acct", "Sales"."Orders"')
        found = sessions()
    assert found["status"] == "failed", found
    assert found["detail"][0].endswith('(holds locks on "Acct", "Sales"."Orders")'), found
    assert sessions()["status"] == "passed"
    with psycopg.connect(db_url) as idle:
        idle.execute('SELECT * FROM "Sales"."Acct"')  # another schema's table of the same name
        found = sessions()
    assert found["status"] == "passed", found  # not the table the migration changes


def test_a_read_only_database_fails_the_check_with_a_fix_that_works(tmp_path: Path, db_url: str, db_name: str,
                                                                    conn: Conn) -> None:
    """default_transaction_read_only carried by the database, or by the role in it: migrate would fail at
    its first write, so the checklist says so before, with the statements that lift it where it was set."""
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "1_a.sql").write_text("-- pgshift:up\nCREATE TABLE a (id int);\n")
    role = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
    for where in (sql.SQL("DATABASE {}").format(sql.Identifier(db_name)),
                  sql.SQL("ROLE {} IN DATABASE {}").format(sql.Identifier(role), sql.Identifier(db_name))):
        conn.execute(sql.SQL("ALTER {} SET default_transaction_read_only = on").format(where))
        result = check_result("server accepts writes", cwd=tmp_path, url=db_url)
        assert result["status"] == "failed", result
        fix = result["detail"][0].split("meant to take writes, run: ", 1)[1]
        assert run_pgshift(["migrate"], cwd=tmp_path, url=db_url).returncode == 24
        with psycopg.connect(db_url, autocommit=True) as session:
            session.execute(fix.encode())
        assert check_result("server accepts writes", cwd=tmp_path, url=db_url)["status"] == "passed"


def test_existing_rows_a_pending_constraint_would_reject_fail_the_check(
    pg_server: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each form that makes the server check the rows already there, looked for before migrating. A table
    the pending migrations create, or whose rows an earlier pending statement changes, is not a failure."""
    settings = _project(tmp_path, db_url, pg_server, "SELECT 1;\n")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute('CREATE TABLE "Order Items" (id int PRIMARY KEY, qty int, sku text);'
                     "INSERT INTO \"Order Items\" VALUES (1, 5, 'a'), (2, -1, 'b'), (3, 2, 'B'), (4, NULL, NULL)")
    migrations = tmp_path / "migrations"
    (migrations / "2_next.sql").write_text(
        'ALTER TABLE "Order Items" ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;\n'  # checks no row now
        "CREATE TABLE fresh (id int);\n"
        "CREATE TABLE brand_new (id int PRIMARY KEY);\n"
        "ALTER TABLE fresh ALTER COLUMN id SET NOT NULL;\n")
    # An operation changes no existing column's values (this add_column fills only its new column); its SQL may.
    (migrations / "3_fix.ops.yaml").write_text(
        "operations:\n  - add_column: {table: Order Items, column: {name: flag, type: int, default: '0'}}\n"
        "  - sql: {up: 'UPDATE accounts SET balance = 3 WHERE balance < 3', down: 'SELECT 1'}\n")
    (migrations / "4_then.sql").write_text(
        'ALTER TABLE "Order Items" VALIDATE CONSTRAINT qty_positive;\n'  # its CHECK: from 2_next's text
        'CREATE UNIQUE INDEX CONCURRENTLY sku_key ON "Order Items" (lower(sku));\n'
        'ALTER TABLE "Order Items" ALTER COLUMN id SET NOT NULL;\n'  # no null id: passes
        "ALTER TABLE accounts ADD CHECK (balance > 2);\n"  # (1, 2) violates, but 3_fix's UPDATE comes first
        'ALTER TABLE "Order Items" ADD COLUMN note text;\n'
        'ALTER TABLE "Order Items" ALTER COLUMN note SET NOT NULL;\n'
        'CREATE INDEX sku_lower ON "Order Items" (lower(sku));\n'  # not unique: duplicates are fine
        'ALTER TABLE "Order Items" ADD FOREIGN KEY (qty) REFERENCES brand_new;\n')  # brand_new: not there yet
    name = "existing rows meet the pending constraints"
    result = _by_name(run_checks(settings))[name]
    assert (result.status, result.value) == ("failed", "2 of 4 would fail on rows already there"), result
    then = str(migrations / "4_then.sql")
    assert result.detail == [
        f'{then}:1: 1 row violates qty_positive in "public"."Order Items", e.g. id = 2. List them with: '
        'SELECT * FROM "public"."Order Items" WHERE NOT (qty > 0);',
        f'{then}:2: 1 value of lower(sku) is duplicated in "public"."Order Items", stopping sku_key, e.g. '
        'lower(sku) = b (2 rows). List them with: SELECT (lower(sku)), count(*) FROM "public"."Order Items" WHERE '
        "(lower(sku)) IS NOT NULL GROUP BY 1 HAVING count(*) > 1;",
        f'{then}:4: 1 row violates CHECK (balance > 2) in "public"."accounts", e.g. id = 1. List them with: '
        'SELECT * FROM "public"."accounts" WHERE NOT (balance > 2); (its rows change first at 3 fix)',
        f'{then}:6: NOT NULL on note of Order Items not checked: column "note" does not exist yet',
        f"{then}:8: FOREIGN KEY (qty) REFERENCES brand_new of Order Items not checked: brand_new does not exist yet",
    ], result.detail
    # The queries it prints find exactly those rows.
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute('SELECT id FROM "public"."Order Items" WHERE NOT (qty > 0)').fetchall() == [(2,)]
        conn.execute("UPDATE \"Order Items\" SET qty = 1 WHERE id = 2;"
                     "UPDATE \"Order Items\" SET sku = 'c' WHERE id = 3")
    result = _by_name(run_checks(settings))[name]
    assert (result.status, result.value) == ("warning", "1 of 4 violated now"), result
    # A lookup past its time limit is a warning, not a pass.
    monkeypatch.setattr(violations, "LOOKUP_TIMEOUT_MS", 1)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO accounts SELECT g, g FROM generate_series(3, 300000) g")
    result = _by_name(run_checks(settings))[name]
    assert result.status == "warning" and "looking for them took over 0.001 s" in " ".join(result.detail), result
    # The item's lookups share a budget: past it, the rest are listed as not checked; 0 reads no rows.
    budget = dataclasses.replace(settings, check=dataclasses.replace(settings.check,
                                                                    rows_budget=Duration.parse("500ms")))
    result = _by_name(run_checks(budget))[name]
    assert (result.status, result.value) == ("passed", "0 constraint(s) checked against the rows there now"), result
    assert f"{then}:1: qty_positive of Order Items not checked: the lookups before it used check.rows_budget " \
        "(500ms)" in result.detail, result
    off = dataclasses.replace(settings, check=dataclasses.replace(settings.check, rows_budget=Duration.parse("0")))
    result = _by_name(run_checks(off))[name]
    assert (result.status, result.value, result.detail) == ("skipped", "no rows read", ["check.rows_budget = 0"])
