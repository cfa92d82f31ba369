"""One lint policy (pgshift.lint.model.lint_verdict) over one linting of the pending migrations
(pgshift.lint.live.lint_pending): `migrate`'s gate, `check` and `lint --database` report the same
findings for the same folder and server, and block on the same ones, at `lint.fail_level`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from pgshift import api
from pgshift.config import load_settings
from pgshift.errors import MigrationRefused
from pgshift.runner.gate import MigrateChecks
from tests.helpers import run_pgshift, write_migration

Conn = psycopg.Connection[tuple[object, ...]]

OPS = """operations:
  - create_table:
      table: events
      columns:
        - {name: id, type: bigint, primary_key: true}
        - {name: kind, type: "varchar(20)"}
"""
# On items (on the server): warning-level findings (PS037, PS039) and an error-level one (PS001). On events
# (the pending .ops migration creates it, so it is new and empty): nothing, though lint judged it as
# a table of unknown size before it ran the gate's own function.
SQL = ("ALTER TABLE items ADD COLUMN label varchar(40);\n"
       "CREATE INDEX items_id_idx ON items (id);\n"
       "CREATE INDEX events_kind_idx ON events (kind);")


def _project(tmp_path: Path, conn: Conn, fail_level: str, sql: str = SQL) -> Path:
    conn.execute("CREATE TABLE items (id bigint PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 20)")
    # A project that turned migrate's lock_timeout off, so that PS037 is the warning these tests block on.
    (tmp_path / "pgshift.toml").write_text(
        'lock_timeout = "0"\n[backup]\npolicy = "never"\n'
        '[lint]\nsmall_table_rows = 0\n'  # judge items as a production table
        f'fail_level = "{fail_level}"\n')
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "1_events.ops.yaml").write_text(OPS)
    write_migration(folder, "2", "items", sql)
    return tmp_path


def _key(f: dict[str, Any]) -> tuple[str, int, str, str]:
    return (Path(f["file"]).name, f["line"], f["rule"], f["severity"])


def _gate(project: Path, db_url: str) -> tuple[list[dict[str, Any]], str | None]:
    settings = load_settings(cwd=project, overrides={"database_url": db_url}, environ={})
    checks = MigrateChecks(backup=False)
    try:
        api.migrate(settings, checks=checks)
    except MigrationRefused as exc:
        return [f.to_json() for f in checks.findings], exc.message
    return [f.to_json() for f in checks.findings], None


def _check(project: Path, db_url: str) -> dict[str, Any]:
    result = run_pgshift(["check", "--json"], cwd=project, url=db_url)
    checks: dict[str, dict[str, Any]] = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    return checks["lint passes lint.fail_level"]


def _lint(project: Path, db_url: str) -> tuple[list[dict[str, Any]], int]:
    result = run_pgshift(["lint", "--database", db_url, "--json"], cwd=project)
    assert result.returncode in (0, 1), result.stderr
    return [f for f in json.loads(result.stdout)["findings"] if not f["suppressed"]], result.returncode


def test_gate_check_and_lint_database_agree_after_an_ops_migration(tmp_path: Path, db_url: str,
                                                                   conn: Conn) -> None:
    project = _project(tmp_path, conn, "warning")
    linted, code = _lint(project, db_url)
    check = _check(project, db_url)
    gate, refused = _gate(project, db_url)
    keys = sorted(map(_key, gate))
    assert ("2_items.sql", 3, "PS001", "error") in keys and ("2_items.sql", 2, "PS037", "warning") in keys, keys
    assert not [k for k in keys if k[1] == 4], keys  # events is new and empty: the .ops migration creates it
    assert sorted(map(_key, linted)) == keys
    # All three block on the same findings: those at or above fail_level = warning.
    blocking = [f for f in gate if f["severity"] in ("warning", "error")]
    assert refused is not None and f"{len(blocking)} problem(s) at or above 'warning'" in refused
    assert code == 1
    assert check["status"] == "failed", check
    assert sorted(check["detail"]) == sorted(f"{f['file']}:{f['line']}: {f['rule']} {f['name']}: {f['message']}"
                                             for f in blocking)
    assert conn.execute("SELECT to_regclass('events')").fetchone() == (None,)  # nothing ran


def test_check_honours_lint_fail_level(tmp_path: Path, db_url: str, conn: Conn) -> None:
    project = _project(tmp_path, conn, "warning", sql="ALTER TABLE items ADD COLUMN label varchar(40);")
    check = _check(project, db_url)
    assert check["status"] == "failed", check  # a warning, at fail_level = warning
    assert "PS037" in " ".join(check["detail"])
    _, refused = _gate(project, db_url)
    assert refused is not None and "PS037" in refused
    (project / "pgshift.toml").write_text('lock_timeout = "0"\n[backup]\npolicy = "never"\n'
                                          '[lint]\nfail_level = "error"\n')
    check = _check(project, db_url)
    assert check["status"] == "passed", check
    assert "1 warning(s)" in check["value"]


def test_the_gate_check_and_lint_database_know_migrate_sets_the_timeouts(tmp_path: Path, db_url: str,
                                                                       conn: Conn) -> None:
    """`migrate` sets lock_timeout (2s by default) around every migration, so its gate, `check` and
    `lint --database` do not claim the ALTER runs without one; offline `lint` cannot know who runs the
    file and still says so. A statement_timeout of 0 sets none: PS038's note stays true and stays."""
    project = _project(tmp_path, conn, "warning", sql="ALTER TABLE items ADD COLUMN label varchar(40);")
    (project / "pgshift.toml").write_text('[backup]\npolicy = "never"\n[lint]\nsmall_table_rows = 0\n'
                                          'fail_level = "warning"\n')
    toml = (project / "pgshift.toml").read_text()
    (project / "pgshift.toml").write_text('lock_timeout = "0"\nstatement_timeout = "1min"\n' + toml)
    rules = {f["rule"] for f in _lint(project, db_url)[0]}
    assert "PS037" in rules and "PS038" not in rules, rules  # what migrate would set: no lock_timeout
    (project / "pgshift.toml").write_text(toml)
    linted, _code = _lint(project, db_url)
    check = _check(project, db_url)
    gate, refused = _gate(project, db_url)
    assert refused is None and check["status"] == "passed", (refused, check)
    for rules in ({f["rule"] for f in linted}, {f["rule"] for f in gate}):
        assert "PS037" not in rules and "PS038" in rules, rules
    assert sorted(map(_key, linted)) == sorted(map(_key, gate))
    offline = run_pgshift(["lint", "--json"], cwd=project)
    assert "PS037" in {f["rule"] for f in json.loads(offline.stdout)["findings"]}


def test_lint_database_judges_by_the_servers_version_as_the_gate_does(tmp_path: Path, db_url: str,
                                                                      conn: Conn) -> None:
    # A constant default rewrote the table before PostgreSQL 11 only: lint.pg_version = 10 is the
    # offline target, but with --database the server's own version decides, as in the gate.
    project = _project(tmp_path, conn, "error", sql="ALTER TABLE items ADD COLUMN active boolean DEFAULT true;")
    (project / "pgshift.toml").write_text('[backup]\npolicy = "never"\n[lint]\nsmall_table_rows = 0\npg_version = 10\n')
    linted, code = _lint(project, db_url)
    gate, refused = _gate(project, db_url)
    assert refused is None and code == 0
    assert "PS005" not in {f["rule"] for f in linted}
    assert sorted(map(_key, linted)) == sorted(map(_key, gate))
    offline = run_pgshift(["lint", "--json"], cwd=project)  # no server: the configured target
    assert "PS005" in {f["rule"] for f in json.loads(offline.stdout)["findings"]}


def test_the_gate_and_check_start_from_lint_schema_file_as_lint_does(tmp_path: Path, db_url: str,
                                                                     conn: Conn) -> None:
    # The table is not created by any migration here (the database predates them): only the schema
    # file says its column is varchar(10), so widening it is known to be metadata-only.
    conn.execute("CREATE TABLE legacy (code varchar(10))")
    (tmp_path / "schema.sql").write_text("CREATE TABLE legacy (code varchar(10));\n")
    (tmp_path / "pgshift.toml").write_text(
        '[backup]\npolicy = "never"\n[lint]\nsmall_table_rows = 0\nschema_file = "schema.sql"\nfail_level = "note"\n')
    write_migration(tmp_path / "migrations", "1", "widen", "ALTER TABLE legacy ALTER COLUMN code TYPE varchar(20);")
    linted, _ = _lint(tmp_path, db_url)
    gate, _ = _gate(tmp_path, db_url)
    assert "PS010" not in {f["rule"] for f in gate}, gate
    assert sorted(map(_key, linted)) == sorted(map(_key, gate))
    assert "PS010" not in " ".join(_check(tmp_path, db_url)["detail"])
