"""``pgshift lint`` end to end: folders, files, stdin, formats, exit codes, --fix, --database,
--schema (pg_dump --schema-only), lock timeline. Server tests use a real PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from pgshift.embedded import find_bindir
from pgshift.lint.engine import lint_migrations
from pgshift.migrations.loader import load_migrations


def run(args: list[str], cwd: Path, *, stdin: str | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("PGSHIFT_", "DATABASE_URL", "GITHUB_ACTIONS"))}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "pgshift", "lint", *args], cwd=cwd, input=stdin, env=full,
                          capture_output=True, text=True, timeout=120)


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def rules_of(data: dict[str, Any], active: bool = True) -> list[str]:
    return [f["rule"] for f in data["findings"] if not (active and f["suppressed"])]


HISTORY = {
    "1_create.sql": "CREATE TABLE users (id bigint PRIMARY KEY, email varchar(50), n int);\n"
                    "CREATE INDEX users_email_idx ON users (email);\n",
    "2_change.sql": "SET lock_timeout = '2s';\nSET statement_timeout = '1min';\n"
                    "ALTER TABLE users ALTER COLUMN email TYPE varchar(100);\n"
                    "ALTER TABLE users ALTER COLUMN n TYPE bigint;\n",
}


def test_folder_replays_history_and_judges_real_old_types(tmp_path: Path) -> None:
    folder = write(tmp_path / "migrations", HISTORY)
    result = run(["--json", str(folder)], tmp_path)
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    rules = rules_of(data)
    # The CREATE INDEX on a table created in the same migration is not flagged; the widening is safe.
    assert "PS001" not in rules
    type_findings = [f for f in data["findings"] if f["rule"] == "PS010"]
    assert len(type_findings) == 1 and "n TYPE bigint" in type_findings[0]["message"]
    assert type_findings[0]["line"] == 4 and type_findings[0]["file"].endswith("2_change.sql")
    assert data["schema"] == "pgshift-lint/1" and data["summary"]["errors"] >= 1


def test_parse_error_is_reported_and_other_files_are_linted(tmp_path: Path) -> None:
    folder = write(tmp_path / "migrations", {
        "1_ok.sql": "CREATE INDEX i ON orders (a);\n",
        "2_broken.sql": "SELECT 1;\nUPDATE t SET a = 1 WHERE b LIMIT 10;\n",
    })
    result = run(["-o", "json", str(folder)], tmp_path)
    assert result.returncode == 2
    data = json.loads(result.stdout)
    problem = data["parse_errors"][0]
    assert problem["file"].endswith("2_broken.sql") and problem["line"] == 2 and problem["column"] > 1
    assert "PS001" in rules_of(data)  # the other file was still linted
    assert "PS043" in rules_of(data)  # and the playbook's UPDATE ... LIMIT is named


def test_stdin_tty_output_and_exit_codes(tmp_path: Path) -> None:
    bad = run(["-"], tmp_path, stdin="ALTER TABLE users ALTER COLUMN phone SET NOT NULL;\n")
    assert bad.returncode == 1
    assert "PS011" in bad.stdout and "VALIDATE CONSTRAINT" in bad.stdout and "<stdin>" in bad.stdout
    clean = run(["-"], tmp_path, stdin="SET lock_timeout = '1s';\nSELECT 1;\n")
    assert clean.returncode == 0, clean.stdout
    warn = run(["--fail-level", "warning", "-"], tmp_path, stdin="DROP VIEW v;\n")
    assert warn.returncode == 1
    assert run(["--fail-level", "error", "-"], tmp_path, stdin="DROP VIEW v;\n").returncode == 0
    assert run(["does-not-exist.sql"], tmp_path).returncode == 2


def test_sarif_github_gitlab_formats(tmp_path: Path) -> None:
    text = "CREATE INDEX i ON t (a);\n-- pgshift:ignore PS024 -- scratch table\nTRUNCATE t;\n"
    sql = write(tmp_path, {"m.sql": text})
    sarif = json.loads(run(["-o", "sarif", str(sql / "m.sql")], tmp_path).stdout)
    assert sarif["version"] == "2.1.0"
    run0 = sarif["runs"][0]
    assert len(run0["tool"]["driver"]["rules"]) >= 45
    results = {r["ruleId"]: r for r in run0["results"]}
    assert results["PS001"]["locations"][0]["physicalLocation"]["region"]["startLine"] == 1
    assert results["PS024"]["suppressions"][0]["justification"] == "scratch table"
    gh = run([str(sql / "m.sql")], tmp_path, env={"GITHUB_ACTIONS": "true"}).stdout
    assert gh.startswith("::error file=") and "title=PS001 create-index-non-concurrently::" in gh
    assert "PS024" not in gh
    gitlab = json.loads(run(["-o", "gitlab", str(sql / "m.sql")], tmp_path).stdout)
    assert {i["check_name"] for i in gitlab} >= {"create-index-non-concurrently"}
    assert all(len(i["fingerprint"]) == 40 and i["location"]["lines"]["begin"] >= 1 for i in gitlab)


def test_fix_writes_safe_rewrite_that_runs_on_a_real_server(tmp_path: Path, db_url: str) -> None:
    folder = write(tmp_path / "migrations", {
        "1_create.sql": "CREATE TABLE users (id bigint PRIMARY KEY, phone text);\n"
                        "CREATE TABLE trades (id bigint PRIMARY KEY, user_id bigint, qty int);\n"
                        "INSERT INTO users VALUES (1, '1');\nINSERT INTO trades VALUES (1, 1, 1);\n",
        "2_change.sql": "-- pgshift:up\nSET lock_timeout = '2s';\n"
                        "CREATE INDEX trades_user_id_idx ON trades (user_id);\n"
                        "ALTER TABLE trades ADD CONSTRAINT trades_user_fk FOREIGN KEY (user_id) "
                        "REFERENCES users (id);\n"
                        "ALTER TABLE trades ADD CONSTRAINT qty_positive CHECK (qty > 0);\n"
                        "ALTER TABLE users ALTER COLUMN phone SET NOT NULL;\n",
    })
    result = run(["--fix", "--json", str(folder)], tmp_path)
    assert "wrote" in result.stderr, result.stderr
    follow = folder / "3_change_no_transaction.sql"
    text = follow.read_text()
    assert "-- pgshift:no-transaction" in text
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS trades_user_id_idx" in text
    assert "VALIDATE CONSTRAINT trades_user_fk" in text and "VALIDATE CONSTRAINT qty_positive" in text
    assert "SET NOT NULL" in text
    changed = (folder / "2_change.sql").read_text()
    assert "NOT VALID" in changed and "CREATE INDEX trades_user_id_idx" not in changed
    # Re-linting the fixed folder: none of the fixed hazards remain.
    again = json.loads(run(["--json", str(folder)], tmp_path).stdout)
    assert not {"PS001", "PS011", "PS012", "PS013"} & set(rules_of(again))
    # And the rewritten migrations really run, in order, on PostgreSQL.
    _, migrations = load_migrations(folder, "native")
    with psycopg.connect(db_url, autocommit=True) as conn:
        for migration in migrations:
            if migration.transactional:
                with conn.transaction():
                    for s in migration.up:
                        conn.execute(s.sql)
            else:
                for s in migration.up:
                    conn.execute(s.sql)
        row = conn.execute("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass "
                           "AND attname = 'phone'").fetchone()
        assert row == (True,)
        valid = conn.execute("SELECT bool_and(convalidated) FROM pg_constraint "
                             "WHERE conrelid = 'trades'::regclass").fetchone()
        assert valid == (True,)


def test_database_sizes_rank_findings_by_impact(tmp_path: Path, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE trades (id bigint, a int)")
        conn.execute("INSERT INTO trades SELECT g, g FROM generate_series(1, 50000) g")
        conn.execute("CREATE TABLE empty_t (a int)")
        conn.execute("ANALYZE trades")
    (tmp_path / "pgshift.toml").write_text("[lint]\nlarge_table_rows = 40000\n")
    sql = write(tmp_path, {"m.sql": "CREATE INDEX i1 ON trades (a);\nCREATE INDEX i2 ON empty_t (a);\n"})
    data = json.loads(run(["--json", "--database", db_url, str(sql / "m.sql")], tmp_path).stdout)
    assert data["pg_version"] >= 12  # taken from the live server
    by_line = {f["line"]: f for f in data["findings"] if f["rule"] == "PS001"}
    assert by_line[1]["severity"] == "error" and "50 k rows" in by_line[1]["message"]
    assert "blocks writes and ddl for minutes" in by_line[1]["message"]
    assert by_line[2]["severity"] == "note"


def test_schema_dump_feeds_the_model(tmp_path: Path, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE users (id bigint PRIMARY KEY, email text, phone text)")
        conn.execute("ALTER TABLE users ADD CONSTRAINT email_nn CHECK (email IS NOT NULL)")
        conn.execute("CREATE TABLE trades (id bigint PRIMARY KEY, user_id bigint)")
        conn.execute("CREATE INDEX trades_user_idx ON trades (user_id)")
    dump = tmp_path / "schema.sql"
    pg_dump = shutil.which("pg_dump") or str(find_bindir() / "pg_dump")
    subprocess.run([pg_dump, "--schema-only", "-f", str(dump), db_url], check=True, timeout=60)
    sql = write(tmp_path, {"m.sql": "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n"
                                    "ALTER TABLE users ALTER COLUMN phone SET NOT NULL;\n"
                                    "ALTER TABLE trades ADD CONSTRAINT fk FOREIGN KEY (user_id) "
                                    "REFERENCES users (id) NOT VALID;\n"
                                    "ALTER TABLE users ALTER COLUMN email TYPE varchar(10);\n"})
    data = json.loads(run(["--json", "--pg-version", "15", "--schema", str(dump), str(sql / "m.sql")],
                          tmp_path).stdout)
    set_not_null = [f["line"] for f in data["findings"] if f["rule"] == "PS011"]
    assert set_not_null == [2]  # email has a validated CHECK, phone does not
    assert "PS052" not in rules_of(data)  # the dump shows the FK columns are indexed
    assert any(f["rule"] == "PS010" and "text -> varchar" in f["message"] for f in data["findings"])


def test_lock_timeline_and_destructive_api(tmp_path: Path) -> None:
    folder = write(tmp_path / "migrations", {
        "1_a.sql": "ALTER TABLE users ADD COLUMN note text;\nUPDATE accounts SET f = 1 WHERE id = 1;\n",
        "2_b.sql": "-- pgshift:ignore drop-column -- unused since v2\nALTER TABLE users DROP COLUMN old;\n",
    })
    data = json.loads(run(["--json", "--locks", str(folder)], tmp_path).stdout)
    steps = data["locks"]
    assert steps[0]["held"] == {"users": "ACCESS EXCLUSIVE"}
    assert steps[1]["held"] == {"users": "ACCESS EXCLUSIVE", "accounts": "ROW EXCLUSIVE"}
    assert steps[1]["blocks"]["users"] == ["reads", "writes", "ddl"]
    assert "PS039" in rules_of(data)
    _, migrations = load_migrations(folder, "native")
    report = lint_migrations(migrations)
    assert not report.is_destructive(migrations[0])
    assert report.is_destructive(migrations[1]) and report.has_destructive("2")
    assert all(f.suppressed for f in report.findings if f.rule == "PS019")


def test_lint_with_a_database_does_not_wait_behind_a_locked_table(db_url: str, tmp_path: Path) -> None:
    import time

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE users (id int PRIMARY KEY, email text)")
        conn.execute("INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 2000) g")
        conn.execute("VACUUM ANALYZE users")
    (tmp_path / "1_idx.sql").write_text("CREATE INDEX users_email ON users (email);\n")
    with psycopg.connect(db_url) as stuck:
        stuck.execute("SET idle_in_transaction_session_timeout = '20s'")  # a regression fails, not hangs
        stuck.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        out = run(["1_idx.sql", "--database", db_url], tmp_path)
        seconds = time.monotonic() - started
    assert seconds < 15, out.stdout
    assert out.returncode in (0, 1), out.stderr
    assert "users is small" in out.stdout, out.stdout  # ranked by the catalog's size for the locked table


def test_a_file_of_a_migrations_folder_is_read_in_its_folders_format(tmp_path: Path) -> None:
    """`pgshift lint migrations/003.sql` (what a CI job does with the changed files) reads the file as its
    tool does: the down part is a rollback, not more statements run after the up part."""
    native = write(tmp_path / "native", {
        "001_orders.sql": "-- pgshift:up\nCREATE TABLE orders (id bigint PRIMARY KEY);\n"
                          "-- pgshift:down\nDROP TABLE orders;\n",
        "002_note.sql": "-- pgshift:up\nALTER TABLE orders ADD COLUMN note text;\n"
                        "-- pgshift:down\nALTER TABLE orders DROP COLUMN note;\n",
    })
    dbmate = write(tmp_path / "dbmate", {
        "20240101000000_orders.sql": "-- migrate:up\nALTER TABLE orders ADD COLUMN note text;\n\n"
                                     "-- migrate:down\nALTER TABLE orders DROP COLUMN note;\n",
    })
    for file in (native / "002_note.sql", dbmate / "20240101000000_orders.sql"):
        done = run(["--json", str(file)], tmp_path)
        data = json.loads(done.stdout)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "PS019" not in rules_of(data), data  # the rollback's DROP COLUMN is not a forward drop
        assert {f["file"] for f in data["findings"]} == {str(file)}
    # A loose SQL file (no migrations folder around it) is still linted as plain SQL.
    loose = tmp_path / "loose.sql"
    loose.write_text("ALTER TABLE orders DROP COLUMN note;\n")
    assert "PS019" in rules_of(json.loads(run(["--json", str(loose)], tmp_path).stdout))


def test_numbered_sql_files_without_pgshift_markers_stay_plain_sql(tmp_path: Path) -> None:
    """A folder of numbered .sql files looks like a native one; a file without pgshift's markers is still
    linted as plain SQL (each statement on its own), not as one transactional migration."""
    folder = write(tmp_path / "cases", {
        "062_safe_cic.sql": "SET lock_timeout = '2s';\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON orders (a);\n",
    })
    data = json.loads(run(["--json", str(folder / "062_safe_cic.sql")], tmp_path).stdout)
    assert rules_of(data) == [], data


def test_the_command_in_process_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path) -> None:
    """`pgshift lint` pauses the cyclic GC until its report is written; a caller running it in-process
    (click's runner, an embedding tool) gets the collector back on, also when lint exits 1."""
    import gc

    from click.testing import CliRunner

    from pgshift.cli.main import cli

    sql = write(tmp_path, {"change.sql": "CREATE INDEX i ON t (a);\n"}) / "change.sql"
    assert gc.isenabled()
    result = CliRunner().invoke(cli, ["lint", "-o", "json", str(sql)])
    assert result.exit_code == 1, result.output
    assert json.loads(result.output)["summary"]["errors"] == 1
    assert gc.isenabled()


def test_database_lint_knows_an_applied_partitioned_index_cannot_be_dropped_concurrently(
        tmp_path: Path, db_url: str) -> None:
    """Migration 1 (applied through the ledger) made events partitioned with an index; migration 2's DROP INDEX
    CONCURRENTLY of it would fail at run time: lint --database says so before migrate runs it."""
    from pgshift import api
    from pgshift.config import Settings

    folder = write(tmp_path / "migrations", {
        "1_events.sql": "CREATE TABLE events (id bigint, k int) PARTITION BY RANGE (k);\n"
                        "CREATE TABLE events_p0 PARTITION OF events FOR VALUES FROM (0) TO (100);\n"
                        "CREATE INDEX events_k ON events (k);\n"})
    api.migrate(Settings(database_url=db_url, base_dir=tmp_path, migrations_dir="migrations"))
    write(folder, {"2_drop.sql": "-- pgshift:no-transaction\nDROP INDEX CONCURRENTLY events_k;\n"})
    (tmp_path / "pgshift.toml").write_text('migrations_dir = "migrations"\n')
    out = run(["--json", "--database", db_url], tmp_path)
    found = [f for f in json.loads(out.stdout)["findings"] if f["rule"] == "PS030"]
    assert [f["severity"] for f in found] == ["error"], out.stdout
    assert "DROP INDEX CONCURRENTLY events_k fails: it is the index of the partitioned table events" \
        in found[0]["message"], found
    assert out.returncode != 0


def test_lint_says_what_lock_a_drop_index_operation_of_a_partitioned_index_takes(tmp_path: Path) -> None:
    """An .ops migration is planned, not linted; but the schema model knows events_k is a partitioned table's
    index, which drop_index can only drop under ACCESS EXCLUSIVE on the table and every partition."""
    write(tmp_path / "migrations", {
        "1_events.sql": "CREATE TABLE events (id bigint, k int) PARTITION BY RANGE (k);\n"
                        "CREATE TABLE events_p0 PARTITION OF events FOR VALUES FROM (0) TO (100);\n"
                        "CREATE INDEX events_k ON events (k);\nCREATE TABLE plain (k int);\n"
                        "CREATE INDEX plain_k ON plain (k);\n",
        "2_drop.ops.yaml": "operations:\n  - drop_index: {name: plain_k}\n  - drop_index: {name: events_k}\n"})
    (tmp_path / "pgshift.toml").write_text('migrations_dir = "migrations"\n')
    out = run(["--json"], tmp_path)
    found = [f for f in json.loads(out.stdout)["findings"] if f["rule"] == "PS030"]
    assert [(f["severity"], f["lock"], f["statement"]) for f in found] == [
        ("warning", "ACCESS EXCLUSIVE", "drop_index events_k")], out.stdout
    assert found[0]["message"].startswith("operations[1].drop_index: events_k is the index of "
                                          "the partitioned table events: PostgreSQL cannot drop it CONCURRENTLY")
    assert found[0]["file"].endswith("2_drop.ops.yaml")
    assert out.returncode == 0, out.stderr  # a warning: the default fail level is error


def test_an_error_under_output_format_json_is_json_like_under_json(tmp_path: Path) -> None:
    """A machine asking for `-o json` gets its error as JSON on stderr, as `--json` does; not rich text."""
    for flag in (["-o", "json"], ["--json"]):
        result = run([*flag, "missing.sql"], tmp_path)
        assert result.returncode == 2 and result.stdout == "", (flag, result.stdout)
        error = json.loads(result.stderr)["error"]
        assert error["code"] == "usage" and "missing.sql is neither a file nor a folder" in error["message"], flag
    sarif = run(["-o", "sarif", "missing.sql"], tmp_path)  # other formats: the error for a person, as before
    assert sarif.returncode == 2 and sarif.stderr.startswith("error (usage): missing.sql"), sarif.stderr
