"""With no migrations_dir configured, the CLI finds each tool's folder in real project layouts,
says which one it chose and why, and refuses when several look like migrations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.helpers import run_pgshift

SAMPLES = Path(__file__).parent / "samples"


def _layout(root: Path, sample: str, target: str) -> Path:
    """Copy a sample folder of migrations to ``root/target``."""
    folder = root / target
    shutil.copytree(SAMPLES / sample, folder)
    return folder


def _chosen_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "using the migrations folder" in line]
    assert len(lines) == 1, stderr
    return lines[0]


def test_prisma_project_root_migrates_on_a_real_server(
    tmp_path: Path, db_url: str, conn: psycopg.Connection[Any]
) -> None:
    _layout(tmp_path, "prisma/prisma", "prisma")
    (tmp_path / "package.json").write_text('{"name": "app"}\n')
    result = run_pgshift(["migrate", "--json"], cwd=tmp_path, url=db_url)
    assert result.returncode == 0, result.stderr
    assert "prisma/migrations (Prisma's default)" in _chosen_line(result.stderr)
    assert len(json.loads(result.stdout)["applied"]) == 3  # stdout stays pure JSON
    rows = conn.execute("SELECT source_format, status FROM pgshift.migrations").fetchall()
    assert rows == [("prisma", "applied")] * 3
    assert not (tmp_path / "migrations").exists()


def test_prisma_schema_named_in_package_json(tmp_path: Path) -> None:
    _layout(tmp_path, "prisma/prisma/migrations", "db/prisma/migrations")
    (tmp_path / "db/prisma/schema.prisma").write_text("// schema\n")
    (tmp_path / "package.json").write_text(json.dumps({"prisma": {"schema": "db/prisma/schema.prisma"}}))
    result = run_pgshift(["lint"], cwd=tmp_path)
    assert result.returncode in (0, 1), result.stderr
    assert "db/prisma/migrations (beside the schema db/prisma/schema.prisma named in package.json)" in \
        _chosen_line(result.stderr)


def test_prisma_config_ts_migrations_path(tmp_path: Path) -> None:
    _layout(tmp_path, "prisma/prisma/migrations", "database/history")
    (tmp_path / "prisma.config.ts").write_text(
        "import { defineConfig } from 'prisma/config'\n"
        "export default defineConfig({\n  schema: 'database/schema.prisma',\n"
        "  migrations: {\n    path: 'database/history',\n  },\n})\n"
    )
    result = run_pgshift(["lint"], cwd=tmp_path)
    assert "database/history (migrations.path in prisma.config.ts)" in _chosen_line(result.stderr)


def test_flyway_conf_locations(tmp_path: Path) -> None:
    _layout(tmp_path, "flyway/sql", "database/flyway")
    (tmp_path / "flyway.conf").write_text(
        "flyway.url=jdbc:postgresql://localhost/app\n# flyway.locations=filesystem:old\n"
        "flyway.locations=filesystem:database/flyway\n"
    )
    result = run_pgshift(["lint"], cwd=tmp_path)
    assert result.returncode in (0, 1), result.stderr
    assert "database/flyway (flyway.locations in flyway.conf)" in _chosen_line(result.stderr)
    assert "6 file(s)" in result.stdout


def test_flyway_toml_locations(tmp_path: Path) -> None:
    _layout(tmp_path, "flyway/sql", "migrations")
    (tmp_path / "flyway.toml").write_text(
        '[environments.default]\nurl = "jdbc:postgresql://localhost/app"\n\n'
        '[flyway]\nenvironment = "default"\nlocations = ["filesystem:migrations"]\n'
    )
    result = run_pgshift(["lint"], cwd=tmp_path)
    assert "migrations ([flyway] locations in flyway.toml; the conventional folder of pgshift" in \
        _chosen_line(result.stderr)


def test_flyway_spring_boot_default(tmp_path: Path) -> None:
    _layout(tmp_path, "flyway/sql", "src/main/resources/db/migration")
    result = run_pgshift(["lint"], cwd=tmp_path)
    assert "src/main/resources/db/migration (Flyway's default classpath:db/migration)" in \
        _chosen_line(result.stderr)


def test_dbmate_environment_variable(tmp_path: Path) -> None:
    _layout(tmp_path, "dbmate/db/migrations", "sql/schema")
    result = run_pgshift(["lint"], cwd=tmp_path, env={"DBMATE_MIGRATIONS_DIR": "./sql/schema"})
    assert "sql/schema (DBMATE_MIGRATIONS_DIR)" in _chosen_line(result.stderr)


def test_dbmate_dotenv(tmp_path: Path) -> None:
    _layout(tmp_path, "dbmate/db/migrations", "sql/schema")
    (tmp_path / ".env").write_text('DATABASE_URL=postgres://x/y\nDBMATE_MIGRATIONS_DIR="sql/schema"\n')
    result = run_pgshift(["lint"], cwd=tmp_path)
    assert "sql/schema (DBMATE_MIGRATIONS_DIR in .env)" in _chosen_line(result.stderr)


def test_goose_environment_variable(tmp_path: Path) -> None:
    _layout(tmp_path, "goose/migrations", "internal/sql")
    result = run_pgshift(["lint"], cwd=tmp_path, env={"GOOSE_MIGRATION_DIR": "internal/sql"})
    assert "internal/sql (GOOSE_MIGRATION_DIR)" in _chosen_line(result.stderr)


def test_rails_like_db_migrations(tmp_path: Path) -> None:
    _layout(tmp_path, "dbmate/db/migrations", "db/migrations")
    result = run_pgshift(["lint"], cwd=tmp_path)
    assert "db/migrations (dbmate's default; a conventional folder of golang-migrate)" in \
        _chosen_line(result.stderr)


def test_two_candidates_are_refused_with_both_listed(tmp_path: Path) -> None:
    _layout(tmp_path, "prisma/prisma", "prisma")
    _layout(tmp_path, "goose/migrations", "migrations")
    result = run_pgshift(["lint"], cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "2 folders" in result.stderr
    assert "prisma/migrations (Prisma's default)" in result.stderr
    assert "migrations (the conventional folder of pgshift and golang-migrate)" in result.stderr
    assert "--dir" in result.stderr
    chosen = run_pgshift(["lint", "--dir", "migrations"], cwd=tmp_path)
    assert chosen.returncode in (0, 1) and "using the migrations folder" not in chosen.stderr


def test_an_empty_folder_beside_the_real_one_is_no_rival(tmp_path: Path) -> None:
    _layout(tmp_path, "prisma/prisma", "prisma")
    (tmp_path / "migrations").mkdir()
    result = run_pgshift(["lint"], cwd=tmp_path)
    line = _chosen_line(result.stderr)
    assert "prisma/migrations (Prisma's default)" in line and "ignored the empty folder migrations" in line


def test_init_uses_the_found_folder_instead_of_creating_one(tmp_path: Path) -> None:
    _layout(tmp_path, "prisma/prisma", "prisma")
    result = run_pgshift(["init", "--no-database"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "using the existing migrations folder" in result.stdout
    assert not (tmp_path / "migrations").exists()
    assert 'migrations_dir = "prisma/migrations"' in (tmp_path / "pgshift.toml").read_text()
    # From now on the folder is configured: nothing more to announce.
    again = run_pgshift(["lint"], cwd=tmp_path)
    assert "using the migrations folder" not in again.stderr


@pytest.mark.parametrize("how", ["flag", "env", "file"])
def test_a_configured_folder_is_never_second_guessed(tmp_path: Path, how: str) -> None:
    _layout(tmp_path, "prisma/prisma", "prisma")
    _layout(tmp_path, "flyway/sql", "migrations")
    args, env = ["lint"], {}
    if how == "flag":
        args += ["--dir", "migrations"]
    elif how == "env":
        env["PGSHIFT_MIGRATIONS_DIR"] = "migrations"
    else:
        (tmp_path / "pgshift.toml").write_text('migrations_dir = "migrations"\n')
    result = run_pgshift(args, cwd=tmp_path, env=env)
    assert result.returncode in (0, 1), result.stderr
    assert "using the migrations folder" not in result.stderr
    assert "6 file(s)" in result.stdout  # the Flyway folder, not Prisma's 3
