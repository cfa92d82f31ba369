"""Settings from file, environment and flags; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgshift.config import duration_ms, load_settings
from pgshift.errors import ConfigError
from pgshift.units import Duration


def test_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    (tmp_path / "pgshift.toml").write_text('lock_timeout = "3s"\nlock_retries = 2\n[backup]\npolicy = "always"\n')
    env = {"PGSHIFT_LOCK_RETRIES": "7", "DATABASE_URL": "postgresql://env/db"}
    settings = load_settings(cwd=tmp_path, environ=env, overrides={"database_url": "postgresql://flag/db"})
    assert settings.lock_timeout == Duration(3000) and str(settings.lock_timeout) == "3s"
    assert settings.lock_retries == 7
    assert settings.database_url == "postgresql://flag/db"
    assert settings.backup.policy == "always"
    assert settings.lock_timeout_ms == 3000


def test_pyproject_tool_section_and_relative_paths(tmp_path: Path) -> None:
    pyproject = '[project]\nname = "x"\n[tool.pgshift]\nmigrations_dir = "db/migrations"\n'
    (tmp_path / "pyproject.toml").write_text(pyproject)
    sub = tmp_path / "src"
    sub.mkdir()
    settings = load_settings(cwd=sub, environ={})
    assert settings.migrations_path == tmp_path / "db" / "migrations"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('lock_timeot = "1s"', "Unknown setting 'lock_timeot'"),
        ('lock_timeout = "soon"', "lock_timeout in"),
        ("lock_retries = -1", "lock_retries in"),
        ('format = "liquibase"', "format in"),
        ('[backup]\npolicy = "sometimes"', "backup.policy in"),
        ('[backup]\nlarge_tables = "skip"', "backup.large_tables in"),
        ('[backup]\nbogus = 1', "Unknown setting 'backup.bogus'"),
        ('history_schema = "bad name"', "history_schema in"),
        ("lock_timeout = [", "is not valid TOML"),
        ("[lint]\npg_version = 9", "lint.pg_version in"),
        # Types are checked for every setting: TOML values carry their type.
        ("migrations_dir = 42", "migrations_dir in"),
        ('migrations_dir = ""', "must not be empty"),
        ('allow_out_of_order = "yes"', "allow_out_of_order in"),
        ("lock_retries = 2.5", "lock_retries in"),
        ('lock_retries = "5"', "lock_retries in"),
        ("application_name = true", "application_name in"),
        ("lock_timeout = true", "lock_timeout in"),
        ("[lint]\nseverity = { PS001 = 1 }", "lint.severity in"),
        ("[app]\nhealth_url = 8080", "app.health_url in"),
        ("backup = 1", "'backup' in"),
    ],
)
def test_bad_files_name_the_key_and_the_file(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "pgshift.toml").write_text(toml + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(cwd=tmp_path, environ={})
    assert message in str(caught.value)
    assert "pgshift.toml" in str(caught.value)


def test_unknown_environment_variable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PGSHIFT_LOCKTIMEOUT"):
        load_settings(cwd=tmp_path, environ={"PGSHIFT_LOCKTIMEOUT": "1s"})


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", cwd=tmp_path, environ={})


@pytest.mark.parametrize(("value", "ms"), [("2s", 2000), ("500ms", 500), ("1min", 60000), ("1.5s", 1500), (250, 250)])
def test_durations(value: str | int, ms: int) -> None:
    assert duration_ms(value) == ms


def test_lint_can_target_servers_older_than_the_runner_supports(tmp_path: Path) -> None:
    (tmp_path / "pgshift.toml").write_text("[lint]\npg_version = 10\n")
    assert load_settings(cwd=tmp_path, environ={}).lint.pg_version == 10


def test_environment_text_is_parsed_once_into_types(tmp_path: Path) -> None:
    env = {"PGSHIFT_ALLOW_OUT_OF_ORDER": "yes", "PGSHIFT_LOCK_RETRIES": "7", "PGSHIFT_BACKUP__JOBS": "4"}
    settings = load_settings(cwd=tmp_path, environ=env)
    assert (settings.allow_out_of_order, settings.lock_retries, settings.backup.jobs) == (True, 7, 4)


@pytest.mark.parametrize(
    ("name", "value"),
    [("PGSHIFT_ALLOW_OUT_OF_ORDER", "maybe"), ("PGSHIFT_LOCK_RETRIES", "2.5"), ("PGSHIFT_BACKUP__JOBS", "-1"),
     ("PGSHIFT_BACKUP", "always")],
)
def test_bad_environment_values_name_the_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(cwd=tmp_path, environ={name: value})


def test_durations_may_be_bare_numbers_in_toml(tmp_path: Path) -> None:
    (tmp_path / "pgshift.toml").write_text("lock_timeout = 500\nstatement_timeout = 0\n")
    settings = load_settings(cwd=tmp_path, environ={})
    assert (settings.lock_timeout_ms, settings.statement_timeout_ms) == (500, 0)


def test_a_message_naming_a_section_keeps_its_brackets_on_the_terminal(tmp_path: Path) -> None:
    from tests.helpers import run_pgshift

    (tmp_path / "pgshift.toml").write_text("backup = 1\n")
    result = run_pgshift(["lint"], cwd=tmp_path)
    assert result.returncode == 3
    assert "a [backup] section" in result.stderr


def test_paths_with_brackets_are_printed_as_they_are(tmp_path: Path) -> None:
    from tests.helpers import run_pgshift

    project = tmp_path / "app[red]"
    project.mkdir()
    result = run_pgshift(["init", "--no-database"], cwd=project)
    assert result.returncode == 0, result.stderr
    assert f"created {project / 'migrations'}" in result.stdout


def test_library_callers_get_the_found_folder_and_one_announcement(tmp_path: Path) -> None:
    import dataclasses

    from pgshift.config import Settings

    (tmp_path / "prisma" / "migrations").mkdir(parents=True)
    (tmp_path / "prisma" / "migrations" / "migration_lock.toml").write_text('provider = "postgresql"\n')
    said: list[str] = []
    settings = dataclasses.replace(load_settings(cwd=tmp_path, environ={}), announce=said.append)
    copy = dataclasses.replace(settings, database_url="postgresql://clone/db")
    assert copy.migrations_path == settings.migrations_path == tmp_path / "prisma" / "migrations"
    assert len(said) == 1 and "Prisma's default" in said[0]
    assert Settings(base_dir=tmp_path).migrations_path == tmp_path / "migrations"  # built directly: as given


def test_ledger_mirror_section(tmp_path: Path) -> None:
    (tmp_path / "pgshift.toml").write_text('[ledger]\nmirror = "flyway"\nmirror_schema = "app"\n')
    settings = load_settings(cwd=tmp_path, environ={})
    assert (settings.ledger.mirror, settings.ledger.mirror_schema) == ("flyway", "app")
    assert load_settings(cwd=tmp_path, environ={"PGSHIFT_LEDGER__MIRROR": "goose"}).ledger.mirror == "goose"
    (tmp_path / "pgshift.toml").write_text('[ledger]\nmirror = "liquibase"\n')
    with pytest.raises(ConfigError, match=r"ledger.mirror in .*pgshift.toml must be one of prisma, flyway, dbmate"):
        load_settings(cwd=tmp_path, environ={})
