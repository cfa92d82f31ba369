"""The targets file and the [targets] settings: every mistake names the file and line, or the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgshift import api
from pgshift.config import load_settings
from pgshift.errors import ConfigError, FileProblem
from tests.helpers import run_pgshift

URL = "postgresql://app:s3cret-pw@db1.example.com:5433/tenant_a"


def _read(tmp_path: Path, text: str, toml: str = "") -> list[api.Target]:
    (tmp_path / "pgshift.toml").write_text(toml)
    (tmp_path / "targets.txt").write_text(text)
    return api.read_targets(load_settings(cwd=tmp_path, environ={}), "targets.txt")


def test_urls_named_urls_key_value_strings_and_comments(tmp_path: Path) -> None:
    targets = _read(tmp_path, f"# tenants\n\n{URL}   # the first\nacme postgresql://db2/acme\n"
                              "host=db3 port=5432 dbname=tenant_a user=app\n")
    assert [t.name for t in targets] == ["tenant_a (tenant_a on db1.example.com:5433)", "acme",
                                         "tenant_a (tenant_a on db3:5432)"]
    assert [t.source.rsplit(":", 1)[1] for t in targets] == ["3", "4", "5"]
    assert targets[0].url == URL and "s3cret" not in targets[0].where + targets[0].name


@pytest.mark.parametrize(("text", "toml", "message"), [
    ("", "", "lists no target"),
    ("# nothing\n\n", "", "lists no target"),
    (f"{URL}\n{URL}\n", "", r"targets.txt:2: database tenant_a on db1.example.com:5433 is listed twice .first at "
                            r".*targets.txt:1\)"),
    ("acme\n", "", "lists target names, which are looked up with targets.query, and none is set"),
    ("acme bcme\n", "", r"targets.txt:1: 'acme bcme' is neither a connection URL"),
    ("postgresql://app:s3cret-pw@db1/x?sslmode=bogus&port=x=y\n", "", "targets.txt:1: .* is not a valid"),
    (f"{URL}\n", "[targets]\ncanary = [\"nobody\"]\n", None),
])
def test_mistakes_in_the_file_name_the_line(tmp_path: Path, text: str, toml: str, message: str | None) -> None:
    if message is None:  # the file is fine; the canary names a target it does not list
        (tmp_path / "pgshift.toml").write_text(toml)
        (tmp_path / "targets.txt").write_text(text)
        with pytest.raises(ConfigError, match=r"targets.canary names .nobody., which the targets file does not list"):
            api.migrate_targets(load_settings(cwd=tmp_path, environ={}), "targets.txt")
        return
    with pytest.raises(ConfigError, match=message) as raised:
        _read(tmp_path, text, toml)
    assert "s3cret" not in str(raised.value)


def test_a_missing_file_is_a_file_problem_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileProblem, match=r"The targets file .*nowhere.txt does not exist"):
        api.read_targets(load_settings(cwd=tmp_path, environ={}), "nowhere.txt")


@pytest.mark.parametrize(("toml", "message"), [
    ("parallel = 0", "targets.parallel in .* must be at least 1"),
    ("parallel = -2", "targets.parallel in .* must be a whole number >= 0"),
    ("max_failures = 'some'", "targets.max_failures in .* must be a whole number"),
    ("canary = true", "targets.canary in .* must be a whole number >= 0 .* or a non-empty list of target names"),
    ("canary = []", "targets.canary in .* non-empty list"),
    ("query = ''", "targets.query in .* must not be empty"),
    ("catalog = 'x'", "Unknown setting 'targets.catalog'"),
])
def test_bad_settings_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "pgshift.toml").write_text(f"[targets]\n{toml}\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(cwd=tmp_path, environ={})


def test_settings_from_the_environment(tmp_path: Path) -> None:
    env = {"PGSHIFT_TARGETS__CANARY": "acme globex", "PGSHIFT_TARGETS__PARALLEL": "8",
           "PGSHIFT_TARGETS__MAX_FAILURES": "2"}
    targets = load_settings(cwd=tmp_path, environ=env).targets
    assert (targets.canary, targets.parallel, targets.max_failures) == (["acme", "globex"], 8, 2)
    assert load_settings(cwd=tmp_path, environ={"PGSHIFT_TARGETS__CANARY": "3"}).targets.canary == 3


def test_a_catalog_query_that_fails_names_the_setting(tmp_path: Path, db_url: str) -> None:
    toml = f'[targets]\nquery = "SELECT name FROM tenants"\ncatalog_url = "{db_url}"\n'
    with pytest.raises(ConfigError, match=r'targets.query failed on the catalog .*relation "tenants" does not exist'):
        _read(tmp_path, "acme\n", toml)
    toml = f'[targets]\nquery = "SELECT 1"\ncatalog_url = "{db_url}"\n'
    with pytest.raises(ConfigError, match=r"targets.query must return two columns \(name, url\), not 1"):
        _read(tmp_path, "*\n", toml)


def test_dry_run_with_targets_is_refused_with_a_hint_that_works(tmp_path: Path) -> None:
    (tmp_path / "targets.txt").write_text(URL + "\n")
    run = run_pgshift(["migrate", "--dry-run", "--targets", "targets.txt"], cwd=tmp_path)
    assert run.returncode == 2
    assert "--dry-run cannot be combined with --targets" in run.stderr
    assert "pgshift migrate --dry-run --database-url URL" in run.stderr
