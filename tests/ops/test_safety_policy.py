"""One safety policy for every command that changes data forward (#13): `migrate`, `contract` and
`pgshift backfill` go through backup.policy (apply_backup_policy); `abort` and `rollback`, the ways
back, never do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from pgshift.safety.manifest import verifications
from tests.helpers import run_pgshift, write_migration

Conn = psycopg.Connection[Any]

BACKFILL = ["backfill", "--table", "items", "--set", "label = 'x'", "--where", "label IS NULL", "--max-lag", "off",
            "--quiet"]


def _project(tmp_path: Path, conn: Conn, policy: str) -> Path:
    conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, qty int, label text);"
                 "INSERT INTO items SELECT g, g % 5, NULL FROM generate_series(1, 50) g")
    (tmp_path / "migrations").mkdir()
    (tmp_path / "pgshift.toml").write_text(f'migrations_dir = "migrations"\n[backup]\npolicy = "{policy}"\n'
                                           'directory = "backups"\n')
    return tmp_path


def _backups(project: Path) -> list[Path]:
    folder = project / "backups"
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.exists() else []


def test_backfill_backs_up_first_under_policy_always(tmp_path: Path, db_url: str, conn: Conn) -> None:
    """A batched UPDATE overwrites rows: under `always` a verified backup holds them as they were."""
    project = _project(tmp_path, conn, "always")
    done = run_pgshift([*BACKFILL, "--json"], cwd=project, url=db_url)
    assert done.returncode == 0, done.stderr
    backup = Path(json.loads(done.stdout)["backup"])
    assert _backups(project) == [backup]
    assert any(r.get("ok") for r in verifications(backup))  # verified, as migrate's are
    assert conn.execute("SELECT count(*) FROM items WHERE label = 'x'").fetchone() == (50,)
    skipped = run_pgshift([*BACKFILL, "--json", "--restart", "--no-backup"], cwd=project, url=db_url)
    assert skipped.returncode == 0, skipped.stderr
    assert json.loads(skipped.stdout)["backup"] is None and _backups(project) == [backup]


def test_backfill_drops_nothing_so_other_policies_take_no_backup(tmp_path: Path, db_url: str, conn: Conn) -> None:
    project = _project(tmp_path, conn, "never")  # never: not refused either, though no backup exists
    assert run_pgshift(BACKFILL, cwd=project, url=db_url).returncode == 0
    (project / "pgshift.toml").write_text('[backup]\npolicy = "destructive-only"\ndirectory = "backups"\n')
    done = run_pgshift([*BACKFILL, "--restart"], cwd=project, url=db_url)
    assert done.returncode == 0, done.stderr
    assert _backups(project) == []


def test_contract_backs_up_first_under_policy_always_though_it_drops_nothing(tmp_path: Path, db_url: str,
                                                                               conn: Conn) -> None:
    project = _project(tmp_path, conn, "always")
    (project / "migrations" / "1_check.ops.yaml").write_text(
        'operations:\n  - add_check: {table: items, name: qty_positive, check: "qty >= 0"}\n')
    migrated = run_pgshift(["migrate", "--json"], cwd=project, url=db_url)
    assert migrated.returncode == 0, migrated.stderr
    first = _backups(project)
    assert len(first) == 1  # migrate's, under always
    done = run_pgshift(["contract", "--json"], cwd=project, url=db_url)
    assert done.returncode == 0, done.stderr
    backup = Path(json.loads(done.stdout)["backup"])
    assert _backups(project) == sorted([*first, backup])


def test_rollback_and_abort_are_never_held_back_nor_delayed_by_the_policy(tmp_path: Path, db_url: str,
                                                                          conn: Conn) -> None:
    """Under `never` with no backup anywhere, a down part that drops a table and an abort that drops the
    expand's column both run; under `always` neither takes a backup first."""
    for policy in ("never", "always"):
        project = tmp_path / policy
        project.mkdir()
        conn.execute("DROP TABLE IF EXISTS items, extra")
        _project(project, conn, policy)
        write_migration(project / "migrations", "1", "extra", "CREATE TABLE extra (id int);",
                        "-- pgshift:ignore PS020 -- the test drops it\nDROP TABLE extra;")
        (project / "migrations" / "2_code.ops.yaml").write_text(
            "operations:\n  - add_column: {table: items, column: {name: code, type: text}}\n")
        assert run_pgshift(["migrate", "--no-backup"], cwd=project, url=db_url).returncode == 0
        aborted = run_pgshift(["abort"], cwd=project, url=db_url)
        assert aborted.returncode == 0, aborted.stderr
        rolled = run_pgshift(["rollback"], cwd=project, url=db_url)
        assert rolled.returncode == 0, rolled.stderr
        assert conn.execute("SELECT to_regclass('extra')").fetchone() == (None,)
        assert _backups(project) == [], policy
        conn.execute("DROP SCHEMA pgshift CASCADE")
