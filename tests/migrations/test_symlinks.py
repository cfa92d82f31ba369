"""A migrations folder reached through a symbolic link works; a dangling link says so and where it points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from tests.helpers import run_pgshift, write_migration


def test_a_symlink_to_the_folder_migrates_on_a_real_server(
    tmp_path: Path, db_url: str, conn: psycopg.Connection[Any]
) -> None:
    write_migration(tmp_path / "shared" / "sql", "1", "create_t", "CREATE TABLE t (id bigint)", "DROP TABLE t")
    (tmp_path / "migrations").symlink_to(tmp_path / "shared" / "sql", target_is_directory=True)
    result = run_pgshift(["migrate", "--dir", "migrations"], cwd=tmp_path, url=db_url)
    assert result.returncode == 0, result.stderr
    assert conn.execute("SELECT version, status FROM pgshift.migrations").fetchall() == [("1", "applied")]


def test_a_dangling_folder_link_says_where_it_points(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "migrations").symlink_to("../gone/sql")
    for args in (["status", "--dir", "migrations"], ["init", "--no-database", "--dir", "migrations"]):
        result = run_pgshift(args, cwd=tmp_path, url=db_url)
        assert result.returncode == 6, result.stderr
        assert "is a symbolic link to ../gone/sql" in result.stderr, result.stderr
        assert "does not exist" in result.stderr and "pgshift init" not in result.stderr
    lint = run_pgshift(["lint", "--dir", "migrations"], cwd=tmp_path)
    assert lint.returncode == 2 and "is a symbolic link to ../gone/sql" in lint.stderr


def test_a_dangling_migration_file_link_says_where_it_points(tmp_path: Path, db_url: str) -> None:
    write_migration(tmp_path / "migrations", "1", "create_t", "CREATE TABLE t (id bigint)")
    (tmp_path / "migrations" / "2_gone.sql").symlink_to("/nonexistent/2_gone.sql")
    result = run_pgshift(["migrate", "--dir", "migrations"], cwd=tmp_path, url=db_url)
    assert result.returncode == 6, result.stderr
    assert "2_gone.sql is a symbolic link to /nonexistent/2_gone.sql, which does not exist" in result.stderr
