"""Settings from file, environment and flags; errors name the key."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest

from pgshift.config import (
    DeploySettings,
    LedgerSettings,
    Settings,
    WatchSettings,
    choices_of,
    duration_ms,
    load_settings,
)
from pgshift.errors import ConfigError
from pgshift.units import Duration, Size


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
        ('[watch]\ninterval = "50ms"', "watch.interval in"),
        ('[watch]\ninterval = "50ms"', "must be at least 100ms, not '50ms'."),  # as written, not a repr
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


# -- typed settings: parsed once, at load --------------------------------------------------------
# Settings holding free text (paths, URLs, commands, names). Any other setting has a type that says
# what it holds: a Duration, a Size, a Literal of its choices, a number, a bool, a list.
FREE_TEXT = {"database_url", "migrate_url", "migrations_dir", "history_schema", "application_name", "source",
             "lint.schema_file", "backup.directory", "backup.pg_bindir", "app.health_url", "app.version_file",
             "ledger.mirror_schema", "deploy.app_command", "deploy.rollback_app_command", "deploy.health_command",
             "targets.query", "targets.catalog_url", "deploy.restore_confirm", "backup.pgbackrest_stanza",
             "backup.pgbackrest_config", "backup.pgbackrest_command", "backup.restore_check_directory"}


def _fields(cls: type = Settings, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted key, type, default) of every setting, the sections' own included."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default) and not isinstance(default, (Duration, Size)):
            yield from _fields(type(default), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hints[f.name], default


def _is_text(hint: Any) -> bool:
    return hint is str or (get_origin(hint) in (Union, UnionType) and str in get_args(hint))


def test_no_setting_is_an_untyped_string() -> None:
    """A duration, size or choice typed `str` would be parsed (or not checked) where it is used."""
    for key, hint, default in _fields():
        if _is_text(hint):
            assert key in FREE_TEXT, (f"{key} is a str: give it a Duration, Size or Literal type (config.py), or add "
                                      "it to FREE_TEXT if it holds free text")
            assert not (isinstance(default, str) and re.fullmatch(r"\d+(\.\d+)?\s*[a-zA-Z]*", default)), key


def _section_toml(key: str, value: str) -> str:
    section, _, name = key.rpartition(".")
    return f"[{section}]\n{name} = {value}\n" if section else f"{name} = {value}\n"


TYPED = [(key, hint) for key, hint, _ in _fields() if hint in (Duration, Size) or choices_of(hint)]


def test_the_typed_settings_are_the_expected_ones() -> None:
    # Guards the meta-tests below against finding nothing.
    keys = {key for key, _ in TYPED}
    assert {"lock_timeout", "rewrite_guard", "deploy.soak", "watch.max_lag_bytes", "backup.policy", "ledger.mirror",
            "format", "deploy.on_failure"} <= keys
    assert len(keys) >= 28


@pytest.mark.parametrize(("key", "hint"), TYPED, ids=[key for key, _ in TYPED])
def test_every_typed_setting_refuses_a_bad_value_naming_the_key_and_where(tmp_path: Path, key: str,
                                                                          hint: Any) -> None:
    variable = "PGSHIFT_" + key.upper().replace(".", "__")
    with pytest.raises(ConfigError, match=f"{key} in the environment variable {variable} must be"):
        load_settings(cwd=tmp_path, environ={variable: "bogus"})
    (tmp_path / "pgshift.toml").write_text(_section_toml(key, '"bogus"'))
    with pytest.raises(ConfigError) as caught:
        load_settings(cwd=tmp_path, environ={})
    assert f"{key} in {tmp_path / 'pgshift.toml'} must be" in str(caught.value)
    (tmp_path / "pgshift.toml").write_text(_section_toml(key, "true"))
    with pytest.raises(ConfigError, match=f"{re.escape(key)} in .*pgshift.toml must be"):
        load_settings(cwd=tmp_path, environ={})


def test_typed_values_keep_the_text_they_were_written_as(tmp_path: Path) -> None:
    (tmp_path / "pgshift.toml").write_text('lock_timeout = "1.5s"\nrewrite_guard = "64MB"\n'
                                           '[deploy]\nsoak = "2d"\nwatch = 90000\ncontract = "auto"\n')
    settings = load_settings(cwd=tmp_path, environ={"PGSHIFT_WATCH__MAX_LAG": "10m"})
    assert (settings.lock_timeout.ms, str(settings.lock_timeout)) == (1500, "1.5s")
    assert (settings.rewrite_guard.bytes, str(settings.rewrite_guard)) == (64 * 1024**2, "64MB")
    assert settings.deploy.soak.delta == timedelta(days=2) and f"{settings.deploy.soak}" == "2d"
    assert (settings.deploy.watch.seconds, str(settings.deploy.watch)) == (90.0, "90000")
    assert settings.deploy.contract == "auto" and settings.watch.max_lag.ms == 600_000
    assert str(Settings().backup.max_age) == "24h"  # the defaults are typed as well


@pytest.mark.parametrize(("text", "server"), [("2s", "2s"), ("0", "0"), ("10m", "10min"), ("1.5s", "1500ms"),
                                              ("24h", "1d"), (250, "250ms"), ("90s", "90s"), ("2.5min", "150s")])
def test_durations_render_as_postgresql_takes_them(text: str | int, server: str) -> None:
    assert Duration.parse(text).postgres == server


def test_settings_and_every_section_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.lock_timeout = Duration(1)  # type: ignore[misc]
    for section in (v for v in vars(settings).values() if dataclasses.is_dataclass(v)):
        assert getattr(type(section), "__dataclass_params__").frozen, type(section).__name__  # noqa: B009
        name = dataclasses.fields(section)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(section, name, getattr(section, name))
    changed = dataclasses.replace(settings, deploy=dataclasses.replace(settings.deploy, soak=Duration.parse("1d")))
    assert changed.deploy.soak.ms == 86_400_000 and settings.deploy.soak.ms == 7 * 86_400_000


def test_settings_built_directly_must_be_typed() -> None:
    """A library caller's Settings(lock_timeout="2s") fails at once, not inside a migration."""
    with pytest.raises(TypeError, match=r"Settings.lock_timeout must be a pgshift.units.Duration \(Duration.parse"):
        Settings(lock_timeout="2s")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"WatchSettings\.max_lag_bytes must be a pgshift\.units\.Size"):
        WatchSettings(max_lag_bytes="64MB")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"DeploySettings\.contract must be one of auto, later, not 'soon'"):
        DeploySettings(contract="soon")  # type: ignore[arg-type]
    assert LedgerSettings(mirror=None).mirror is None and LedgerSettings(mirror="goose").mirror == "goose"


def test_watch_interval_flag_returns_new_settings() -> None:
    from pgshift.watch import watch_flags

    settings = Settings()
    changed, seconds = watch_flags(settings, for_="2min", interval="250ms")
    assert (seconds, changed.watch.interval.ms, settings.watch.interval.ms) == (120.0, 250, 1000)
    with pytest.raises(ConfigError, match="--interval must be at least 100ms"):
        watch_flags(settings, for_="0", interval="50ms")


def test_metric_limits_are_numbers_parsed_once(tmp_path: Path) -> None:
    """A watch compares each sample with its limit: the limit is a float from load on, quoted or not."""
    (tmp_path / "pgshift.toml").write_text('[watch]\nmetric_limits = { errors = "10", latency = 2.5, hits = 3 }\n')
    limits = load_settings(cwd=tmp_path).watch.metric_limits
    assert limits == {"errors": 10.0, "latency": 2.5, "hits": 3.0}
    assert all(type(limit) is float for limit in limits.values())
    (tmp_path / "pgshift.toml").write_text('[watch]\nmetric_limits = { errors = true }\n')
    with pytest.raises(ConfigError, match=r"watch.metric_limits.errors in .*pgshift.toml must be a number, not True"):
        load_settings(cwd=tmp_path)
    with pytest.raises(TypeError, match=r"metric_limits\['errors'\] must be a number"):
        WatchSettings(metric_limits={"errors": "10"})  # type: ignore[dict-item]
