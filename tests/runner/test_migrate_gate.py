"""What `pgshift migrate` checks before running anything: lint and the backup policy."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.helpers import run_pgshift, write_migration

Conn = psycopg.Connection[tuple[object, ...]]
SUPPRESS_DROP = "-- pgshift:ignore drop-table -- the app stopped reading it two releases ago"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "migrations").mkdir()
    (tmp_path / "pgshift.toml").write_text('[backup]\ndirectory = "backups"\n')
    return tmp_path


def _tables(conn: Conn) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()}


def test_lint_error_refuses_before_anything_runs(project: Path, db_url: str, conn: Conn) -> None:
    write_migration(project / "migrations", "1", "ok", "CREATE TABLE a (id bigint PRIMARY KEY);")
    write_migration(project / "migrations", "2", "bad", "UPDATE a SET id = id WHERE id IN (SELECT 1);\n"
                    "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$\n"
                    "BEGIN UPDATE a SET id = 2 LIMIT 5; END $$;")
    result = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert result.returncode == 19, result.stderr
    assert "PS043 update-limit" in result.stderr and "2_bad.sql:" in result.stderr
    assert _tables(conn) == set()  # not even the clean first migration ran

    forced = run_pgshift(["migrate", "--no-lint", "--to", "1"], cwd=project, url=db_url)
    assert forced.returncode == 0, forced.stderr
    assert _tables(conn) == {"a"}


def test_destructive_migration_is_backed_up_first(project: Path, db_url: str, conn: Conn) -> None:
    conn.execute("CREATE TABLE old_stuff (id bigint PRIMARY KEY); INSERT INTO old_stuff VALUES (1), (2)")
    write_migration(project / "migrations", "1", "drop",
                    f"{SUPPRESS_DROP}\nDROP TABLE old_stuff;")
    result = run_pgshift(["migrate", "--json"], cwd=project, url=db_url)
    assert result.returncode == 0, result.stderr
    backup = Path(json.loads(result.stdout)["backup"])
    assert backup.parent == project / "backups"
    manifest = json.loads((backup / "manifest.json").read_text())
    counts = {(t["schema"], t["name"]): t["rows"] for t in manifest["tables"]}
    assert counts[("public", "old_stuff")] == 2
    assert "old_stuff" not in _tables(conn)


def test_destructive_migration_without_backup_is_refused_under_policy_never(
    project: Path, db_url: str, conn: Conn
) -> None:
    (project / "pgshift.toml").write_text('[backup]\npolicy = "never"\ndirectory = "backups"\n')
    conn.execute("CREATE TABLE old_stuff (id bigint PRIMARY KEY)")
    write_migration(project / "migrations", "1", "drop",
                    f"{SUPPRESS_DROP}\nDROP TABLE old_stuff;")
    refused = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert refused.returncode == 19
    assert "drops or truncates data" in refused.stderr and "no verified backup" in refused.stderr
    assert "old_stuff" in _tables(conn)
    accepted = run_pgshift(["migrate", "--no-backup"], cwd=project, url=db_url)
    assert accepted.returncode == 0, accepted.stderr
    assert "old_stuff" not in _tables(conn)
    assert not (project / "backups").exists()


@pytest.mark.parametrize("config", ['disable = ["PS020"]', 'disable = ["drop-table"]', 'enable = ["PS001"]'])
def test_a_lint_rule_turned_off_does_not_turn_backup_policy_off(project: Path, db_url: str, conn: Conn,
                                                                 config: str) -> None:
    """lint.enable / lint.disable choose which warnings lint shows, not whether DROP TABLE destroys data:
    the backup policy still sees it (as it sees a suppressed finding)."""
    (project / "pgshift.toml").write_text(f'[lint]\n{config}\n[backup]\npolicy = "never"\ndirectory = "backups"\n')
    conn.execute("CREATE TABLE old_stuff (id bigint PRIMARY KEY)")
    write_migration(project / "migrations", "1", "drop", "DROP TABLE old_stuff;")
    refused = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert refused.returncode == 19, refused.stderr
    assert "1 drop drops or truncates data" in " ".join(refused.stderr.split()) and "old_stuff" in _tables(conn)
    accepted = run_pgshift(["migrate", "--json", "--no-backup"], cwd=project, url=db_url)
    assert accepted.returncode == 0, accepted.stderr
    assert "PS020" not in {f["rule"] for f in json.loads(accepted.stdout)["lint"]}  # still not shown
    assert "old_stuff" not in _tables(conn)


def test_non_destructive_migration_takes_no_backup(project: Path, db_url: str) -> None:
    write_migration(project / "migrations", "1", "add", "CREATE TABLE fresh (id bigint PRIMARY KEY);")
    result = run_pgshift(["migrate", "--json"], cwd=project, url=db_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backup"] is None


def _backup_check(project: Path, db_url: str) -> dict[str, object]:
    done = run_pgshift(["check", "--json"], cwd=project, url=db_url)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    return checks["recent verified backup"]  # type: ignore[no-any-return]


def test_a_backup_written_elsewhere_with_to_satisfies_the_policy_and_check(
    project: Path, db_url: str, conn: Conn, tmp_path: Path, pg_server: object
) -> None:
    (project / "pgshift.toml").write_text('[backup]\npolicy = "never"\ndirectory = "backups"\n')
    conn.execute("CREATE TABLE old_stuff (id bigint PRIMARY KEY)")
    write_migration(project / "migrations", "1", "drop", f"{SUPPRESS_DROP}\nDROP TABLE old_stuff;")
    assert run_pgshift(["init"], cwd=project, url=db_url).returncode == 0  # the ledger that records backups
    # A verified backup of another database in backup.directory does not count for this one.
    other_name = pg_server.create_database()  # type: ignore[attr-defined]
    try:
        taken = run_pgshift(["backup"], cwd=project, url=pg_server.url_for(other_name))  # type: ignore[attr-defined]
    finally:
        pg_server.drop_database(other_name)  # type: ignore[attr-defined]
    assert taken.returncode == 0, taken.stderr
    refused = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert refused.returncode == 19, refused.stderr
    assert "no verified backup of this database" in " ".join(refused.stderr.split())
    assert _backup_check(project, db_url)["status"] == "warning"  # not passed (a warning under policy never)

    elsewhere = tmp_path / "elsewhere"
    taken = run_pgshift(["backup", "--to", str(elsewhere)], cwd=project, url=db_url)
    assert taken.returncode == 0, taken.stderr
    check = _backup_check(project, db_url)  # before: failed, it looked only in ./backups
    assert check["status"] == "passed" and str(check["value"]).startswith(next(elsewhere.iterdir()).name), check
    migrated = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert migrated.returncode == 0, migrated.stderr
    assert "old_stuff" not in _tables(conn)
