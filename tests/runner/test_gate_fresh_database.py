"""The migrate gate, `lint --database` and `check` on a fresh database: tables an earlier migration
of the same run creates are new and empty, tables on the server are judged by their real size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgshift import api
from pgshift.config import load_settings
from pgshift.errors import MigrationRefused
from pgshift.runner.gate import MigrateChecks
from tests.helpers import run_pgshift, write_migration

Conn = psycopg.Connection[tuple[object, ...]]

# A realistic history: every statement here is a hazard on a busy table, and harmless on a table
# the same run has just created.
HISTORY: list[tuple[str, str, str]] = [
    ("001", "users", "CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL);"),
    ("002", "accounts", "CREATE TABLE accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text);\n"
     "INSERT INTO accounts (name) VALUES ('default');"),
    ("003", "users_account", "ALTER TABLE users ADD COLUMN account_id bigint;"),
    ("004", "users_fk", "ALTER TABLE users ADD CONSTRAINT users_account_fk FOREIGN KEY (account_id) "
     "REFERENCES accounts (id);"),
    ("005", "users_account_idx", "CREATE INDEX users_account_idx ON users (account_id);"),
    ("006", "users_email_key", "CREATE UNIQUE INDEX users_email_key ON users (email);"),
    ("007", "accounts_name_nn", "ALTER TABLE accounts ALTER COLUMN name SET NOT NULL;"),
    ("008", "users_created_at", "ALTER TABLE users ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();"),
    ("009", "orders", "CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
     "user_id bigint NOT NULL, total numeric(12,2));"),
    ("010", "orders_user", "ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users (id);\n"
     "CREATE INDEX orders_user_idx ON orders (user_id);"),
    ("011", "orders_status", "ALTER TABLE orders ADD COLUMN status text DEFAULT 'new';\n"
     "ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN ('new', 'paid'));"),
    ("012", "orders_total_type", "ALTER TABLE orders ALTER COLUMN total TYPE numeric(14,2);"),
    ("013", "accounts_rename", "ALTER TABLE accounts RENAME COLUMN name TO title;"),
    ("014", "users_public_id", "ALTER TABLE users ADD COLUMN public_id uuid DEFAULT gen_random_uuid();"),
    ("015", "users_public_id_nn", "ALTER TABLE users ALTER COLUMN public_id SET NOT NULL;"),
    ("016", "users_drop_public_id", "ALTER TABLE users DROP COLUMN public_id;"),
    ("017", "orders_status_nn", "ALTER TABLE orders ALTER COLUMN status SET NOT NULL;"),
    ("018", "orders_archive", "CREATE TABLE orders_archive (LIKE orders);\n"
     "CREATE INDEX orders_archive_user_idx ON orders_archive (user_id);"),
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "migrations").mkdir()
    (tmp_path / "pgshift.toml").write_text('[backup]\ndirectory = "backups"\npolicy = "never"\n')
    for version, name, up in HISTORY:
        write_migration(tmp_path / "migrations", version, name, up)
    return tmp_path


def _tables(conn: Conn) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def _key(finding: dict[str, Any]) -> tuple[str, int, str, str, str]:
    return (Path(finding["file"]).name, finding["line"], finding["rule"], finding["severity"], finding["message"])


def _gate_findings(project: Path, db_url: str) -> tuple[list[dict[str, Any]], bool]:
    """(the gate's active findings, whether it refused), from the same code path as the CLI."""
    settings = load_settings(cwd=project, overrides={"database_url": db_url}, environ={})
    checks = MigrateChecks(backup=False)
    refused = False
    try:
        api.migrate(settings, checks=checks)
    except MigrationRefused:
        refused = True
    return [f.to_json() for f in checks.findings], refused


def _lint_database(project: Path, db_url: str) -> list[dict[str, Any]]:
    result = run_pgshift(["lint", "--database", db_url, "--json", "--no-down"], cwd=project)
    assert result.returncode in (0, 1), result.stderr
    return [f for f in json.loads(result.stdout)["findings"] if not f["suppressed"]]


def _check_lint(project: Path, db_url: str) -> dict[str, Any]:
    result = run_pgshift(["check", "--json"], cwd=project, url=db_url)
    checks: dict[str, dict[str, Any]] = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    return checks["lint passes lint.fail_level"]


def _errors_as_check_lists_them(findings: list[dict[str, Any]]) -> list[str]:
    return [f"{f['file']}:{f['line']}: {f['rule']} {f['name']}: {f['message']}" for f in findings
            if f["severity"] == "error"]


def test_a_fresh_database_applies_a_real_history_with_the_gate_on(project: Path, db_url: str, conn: Conn) -> None:
    result = run_pgshift(["migrate", "--json"], cwd=project, url=db_url)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert len(out["applied"]) == len(HISTORY)
    assert [f for f in out["lint"] if f["severity"] == "error"] == []
    assert _tables(conn) == {"users", "accounts", "orders", "orders_archive"}


def test_lint_database_and_check_agree_with_the_gate_on_a_fresh_database(project: Path, db_url: str) -> None:
    linted = _lint_database(project, db_url)
    check = _check_lint(project, db_url)
    gate, refused = _gate_findings(project, db_url)
    assert not refused
    assert sorted(map(_key, linted)) == sorted(map(_key, gate))
    assert not [f for f in linted if f["severity"] == "error"]
    assert check["status"] == "passed", check


def test_a_large_existing_table_is_still_refused(project: Path, db_url: str, conn: Conn) -> None:
    first = run_pgshift(["migrate", "--to", "001"], cwd=project, url=db_url)
    assert first.returncode == 0, first.stderr
    conn.execute("INSERT INTO users (email) SELECT 'u' || g || '@example.com' FROM generate_series(1, 20000) g")
    conn.execute("ANALYZE users")

    refused = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert refused.returncode == 19, refused.stderr
    assert "Nothing was run" in refused.stderr
    assert _tables(conn) == {"users"}

    gate, was_refused = _gate_findings(project, db_url)
    assert was_refused
    errors = {(Path(f["file"]).name, f["rule"]) for f in gate if f["severity"] == "error"}
    # Only statements on users, the table with rows; accounts and orders are created by this run.
    assert errors == {
        ("004_users_fk.sql", "PS012"), ("005_users_account_idx.sql", "PS001"),
        ("006_users_email_key.sql", "PS001"), ("014_users_public_id.sql", "PS005"),
        ("015_users_public_id_nn.sql", "PS011"), ("016_users_drop_public_id.sql", "PS019"),
    }
    for file, _ in errors:
        assert file in refused.stderr or "more" in refused.stderr

    # check lints the same pending migrations the gate does and lists the same errors.
    check = _check_lint(project, db_url)
    assert check["status"] == "failed"
    assert sorted(check["detail"]) == sorted(_errors_as_check_lists_them(gate))
    # lint --database lints every file, and judges the applied one by today's size too: a
    # CREATE TABLE of a table the server has is not new, but it reports nothing here.
    linted = _lint_database(project, db_url)
    assert sorted(map(_key, linted)) == sorted(map(_key, gate))


def test_a_table_filled_by_insert_select_in_the_run_is_not_empty(tmp_path: Path, db_url: str, conn: Conn) -> None:
    (tmp_path / "pgshift.toml").write_text('[backup]\npolicy = "never"\n')
    folder = tmp_path / "migrations"
    write_migration(folder, "1", "events", "CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz);")
    write_migration(folder, "2", "events_copy", "CREATE TABLE events_copy (id bigint, at timestamptz);")
    write_migration(folder, "3", "fill", "INSERT INTO events_copy SELECT id, at FROM events;")
    write_migration(folder, "4", "index", "CREATE INDEX events_copy_at_idx ON events_copy (at);\n"
                    "CREATE INDEX events_at_idx ON events (at);")
    refused = run_pgshift(["migrate"], cwd=tmp_path, url=db_url)
    assert refused.returncode == 19, refused.stderr
    assert "4_index.sql:2: PS001" in refused.stderr  # the filled table
    assert "4_index.sql:3" not in refused.stderr  # events is new and empty
    assert _tables(conn) == set()
    gate, _ = _gate_findings(tmp_path, db_url)
    assert sorted(map(_key, _lint_database(tmp_path, db_url))) == sorted(map(_key, gate))


@pytest.mark.parametrize("fill", [
    "COPY events_copy FROM STDIN",
    "MERGE INTO events_copy c USING events e ON c.id = e.id WHEN NOT MATCHED THEN INSERT VALUES (e.id, e.at)",
])
def test_copy_and_merge_fill_a_table_of_the_run(tmp_path: Path, db_url: str, fill: str) -> None:
    folder = tmp_path / "migrations"
    write_migration(folder, "1", "events", "CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz);\n"
                    "CREATE TABLE events_copy (id bigint, at timestamptz);")
    write_migration(folder, "2", "fill", f"{fill};")
    write_migration(folder, "3", "index", "CREATE INDEX events_copy_at_idx ON events_copy (at);")
    linted = _lint_database(tmp_path, db_url)
    assert [(Path(f["file"]).name, f["rule"], f["severity"]) for f in linted if f["rule"] == "PS001"] == [
        ("3_index.sql", "PS001", "error")]


@pytest.mark.parametrize(("create", "flagged"), [
    ("CREATE TABLE summary AS SELECT id FROM events", True),
    ("SELECT id INTO summary FROM events", True),
    ("CREATE TABLE summary AS SELECT id FROM events WITH NO DATA", False),
])
def test_create_table_as_fills_unless_with_no_data(tmp_path: Path, db_url: str, create: str, flagged: bool) -> None:
    folder = tmp_path / "migrations"
    write_migration(folder, "1", "events", "CREATE TABLE events (id bigint PRIMARY KEY);")
    write_migration(folder, "2", "summary", f"{create};")
    write_migration(folder, "3", "index", "CREATE INDEX summary_id_idx ON summary (id);")
    linted = _lint_database(tmp_path, db_url)
    assert any(f["rule"] == "PS001" and f["severity"] == "error" for f in linted) is flagged


def test_a_table_renamed_or_dropped_and_recreated_in_the_run(tmp_path: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE big (id bigint)")
    conn.execute("INSERT INTO big SELECT g FROM generate_series(1, 20000) g")
    conn.execute("ANALYZE big")
    folder = tmp_path / "migrations"
    # A new table renamed is still new; a big table renamed is still big.
    write_migration(folder, "1", "staging", "CREATE TABLE staging (id bigint);")
    write_migration(folder, "2", "rename", "ALTER TABLE staging RENAME TO fresh;\nALTER TABLE big RENAME TO huge;")
    write_migration(folder, "3", "index", "CREATE INDEX fresh_id_idx ON fresh (id);\n"
                    "CREATE INDEX huge_id_idx ON huge (id);")
    # Dropped and created again: new and empty, whatever the server's table of that name holds.
    write_migration(folder, "4", "recreate", "DROP TABLE huge;\nCREATE TABLE huge (id bigint);")
    write_migration(folder, "5", "index_again", "CREATE INDEX huge_id_idx2 ON huge (id);")
    linted = _lint_database(tmp_path, db_url)
    assert [(Path(f["file"]).name, f["line"], f["severity"]) for f in linted if f["rule"] == "PS001"] == [
        ("3_index.sql", 3, "error")]


def test_plain_sql_files_are_one_run_only_against_a_database(tmp_path: Path, db_url: str) -> None:
    first, second = tmp_path / "a.sql", tmp_path / "b.sql"
    first.write_text("CREATE TABLE staging (id bigint);\n")
    second.write_text("CREATE INDEX staging_id_idx ON staging (id);\n")
    live = run_pgshift(["lint", "--database", db_url, "--json", str(first), str(second)], cwd=tmp_path)
    assert [f["rule"] for f in json.loads(live.stdout)["findings"] if f["rule"] == "PS001"] == []
    # Without a server, nothing says b.sql runs right after a.sql on a database without staging.
    offline = run_pgshift(["lint", "--json", str(first), str(second)], cwd=tmp_path)
    assert [f["rule"] for f in json.loads(offline.stdout)["findings"] if f["rule"] == "PS001"] == ["PS001"]
