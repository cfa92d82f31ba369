"""Server errors keep the server's DETAIL and HINT in pgshift's messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from pgshift.errors import server_message
from tests.helpers import run_pgshift


def test_detail_and_hint_of_a_real_server_error(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(psycopg.errors.UniqueViolation) as caught:
        conn.execute("INSERT INTO t VALUES (1)")
    assert "DETAIL: Key (id)=(1) already exists." in server_message(caught.value)
    with pytest.raises(psycopg.errors.UndefinedFunction) as missing:
        conn.execute("SELECT no_such_function(1)")
    assert "HINT: No function matches" in server_message(missing.value)


def test_an_error_without_diagnostics_keeps_its_whole_text() -> None:
    assert server_message(RuntimeError("first line\n  second line")) == "first line second line"


def test_a_refused_statement_outside_migrations_is_one_paragraph_not_a_traceback(
    tmp_path: Path, db_url: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("CREATE ROLE pgshift_no_create LOGIN")
    try:
        url = conninfo.make_conninfo(db_url, user="pgshift_no_create")
        (tmp_path / "migrations").mkdir()
        result = run_pgshift(["migrate"], cwd=tmp_path, url=url)
    finally:
        conn.execute("DROP ROLE pgshift_no_create")
    assert result.returncode == 24, result.stderr
    assert "Traceback" not in result.stderr
    assert "error (server-refused)" in result.stderr and "permission denied for database" in result.stderr
    assert "SQLSTATE 42501" in result.stderr and "CREATE on the database" in result.stderr
