"""A bad connection option is the setting's fault: a config error naming it, not a 'server running?' hint."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import conninfo

from tests.helpers import run_pgshift


def _with(url: str, **options: str) -> str:
    return conninfo.make_conninfo(url, **options)


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [("sslmode", "bogus", "verify-full"), ("target_session_attrs", "primaryy", "prefer-standby"),
     ("port", "54x32", "whole number")],
)
def test_an_invalid_option_in_the_url_is_a_config_error(
    tmp_path: Path, db_url: str, option: str, value: str, expected: str
) -> None:
    result = run_pgshift(["status", "--dir", str(tmp_path)], cwd=tmp_path, url=_with(db_url, **{option: value}))
    assert result.returncode == 3, result.stderr
    assert "error (config)" in result.stderr
    assert f"{option} = '{value}' in database_url" in result.stderr and expected in result.stderr
    assert "running" not in result.stderr


def test_an_invalid_sslmode_from_the_environment_names_the_variable(tmp_path: Path, db_url: str) -> None:
    result = run_pgshift(["status", "--dir", str(tmp_path)], cwd=tmp_path, url=db_url, env={"PGSSLMODE": "always"})
    assert result.returncode == 3, result.stderr
    assert "sslmode = 'always' in the PGSSLMODE environment variable" in result.stderr
