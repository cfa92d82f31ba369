"""A failed CREATE INDEX CONCURRENTLY of an operations file leaves an INVALID index; the runner drops
exactly that one, by the name the planner gave it, whatever characters the name holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import run_pgshift

Conn = psycopg.Connection[tuple[Any, ...]]
INIT = """CREATE TABLE t (id int PRIMARY KEY, email text);
INSERT INTO t VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x');
"""
HOSTILE = 'x ON t"q'  # the old text parsing read this as the index "x"


def _invalid(conn: Conn) -> list[str]:
    return [str(r[0]) for r in conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = 't'::regclass AND NOT i.indisvalid ORDER BY 1").fetchall()]


def _project(tmp_path: Path, ops: str) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir(exist_ok=True)
    (folder / "001_idx.ops.yaml").write_text(ops)
    return tmp_path


@pytest.mark.parametrize("op", ["create_index", "add_unique"])
def test_the_failed_builds_own_invalid_index_is_dropped_not_a_look_alike(
    tmp_path: Path, db_url: str, conn: Conn, op: str
) -> None:
    extra = "      unique: true\n" if op == "create_index" else ""
    ops = (f"operations:\n  - {op}:\n      table: t\n      name: {json.dumps(HOSTILE)}\n"
           f"      columns: [email]\n{extra}")
    project = _project(tmp_path, ops)
    conn.execute(INIT)
    # Someone else's failed build: an INVALID index "x", the look-alike of the hostile name.
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("CREATE UNIQUE INDEX CONCURRENTLY x ON t (email)")
    assert _invalid(conn) == ["x"]

    result = run_pgshift(["migrate"], cwd=project, url=db_url)
    message = " ".join(result.stderr.split())
    assert result.returncode == 8, message
    assert "The INVALID index the failed build left was dropped" in message
    assert _invalid(conn) == ["x"]  # the build's own index is gone; "x" was not touched
    assert conn.execute("SELECT to_regclass(%s)", ('public."x ON t""q"',)).fetchone() == (None,)
