"""A backfill whose role row-level security policies apply to would only see (and so update) the
rows the policies show: pgshift refuses it with a message instead of skipping rows silently."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo, sql

from tests.helpers import database_owner_role, run_pgshift
from tests.ops.helpers import write_project

Conn = psycopg.Connection[tuple[Any, ...]]
INIT = """-- pgshift:up
CREATE TABLE t (id int PRIMARY KEY, tenant int NOT NULL, qty int NOT NULL);
INSERT INTO t SELECT g, g % 4, g FROM generate_series(1, 40) g;
ALTER TABLE t ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_tenant_0 ON t USING (tenant = 0);
"""
ADD_QTY2 = ("operations:\n  - add_column:\n      table: t\n      column: {name: qty2, type: int}\n"
            "      up: \"qty * 2\"\n")


def _said(result: Any) -> str:
    return " ".join(result.stderr.split())


@pytest.fixture
def owner(conn: Conn, db_name: str, db_url: str) -> Iterator[str]:
    """A non-superuser role that owns the test's database (and so its public schema), as an
    application's migration role often does; its connection string."""
    with database_owner_role(conn, db_name, db_url, "owner") as url:
        yield url


def test_expand_backfill_on_a_forced_rls_table_is_refused_not_partial(tmp_path: Path, conn: Conn, owner: str) -> None:
    project = write_project(tmp_path, {"001_init.sql": INIT + "ALTER TABLE t FORCE ROW LEVEL SECURITY;\n",
                                  "002_qty2.ops.yaml": ADD_QTY2})
    result = run_pgshift(["migrate"], cwd=project, url=owner)
    message = _said(result)
    # Before: exit 0 with 30 of the 40 rows left NULL (only tenant 0's rows were visible to the owner).
    assert result.returncode == 8 and "error (migration-failed)" in message, message
    assert "002_qty2.ops.yaml" in message and "Cannot backfill public.t: it has FORCE ROW LEVEL SECURITY" in message
    assert "ALTER TABLE public.t NO FORCE ROW LEVEL SECURITY" in message and "BYPASSRLS" in message
    assert re.findall(r"`pgshift (\w+)`", message) == ["migrate", "abort"]
    assert conn.execute("SELECT count(*) FROM t WHERE qty2 IS NOT NULL").fetchone() == (0,)
    # The hint works: without FORCE the owner sees every row, and migrate continues the expand.
    conn.execute("ALTER TABLE t NO FORCE ROW LEVEL SECURITY")
    again = run_pgshift(["migrate"], cwd=project, url=owner)
    assert again.returncode == 0, _said(again)
    assert conn.execute("SELECT count(*) FROM t WHERE qty2 IS DISTINCT FROM qty * 2").fetchone() == (0,)


def test_pgshift_backfill_on_rls_tables_is_refused_for_owner_with_force_and_for_non_owner(
    tmp_path: Path, conn: Conn, owner: str, db_name: str
) -> None:
    project = write_project(tmp_path, {"001_init.sql": INIT + "ALTER TABLE t FORCE ROW LEVEL SECURITY;\n"})
    assert run_pgshift(["migrate"], cwd=project, url=owner).returncode == 0
    result = run_pgshift(["backfill", "--table", "t", "--set", "qty = qty + 100"], cwd=project, url=owner)
    message = _said(result)
    assert result.returncode == 21 and "error (backfill-failed)" in message, message  # before: exit 0, 10 rows
    assert "Cannot backfill public.t: it has FORCE ROW LEVEL SECURITY" in message
    assert conn.execute("SELECT count(*) FROM t WHERE qty > 100").fetchone() == (0,)

    # A role that is not the owner, with UPDATE granted: the policies apply to it too.
    conn.execute("ALTER TABLE t NO FORCE ROW LEVEL SECURITY")
    writer = f"{db_name}_writer"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'pw'").format(sql.Identifier(writer)))
    try:
        conn.execute(sql.SQL("GRANT SELECT, UPDATE ON t TO {0}; GRANT USAGE, CREATE ON SCHEMA pgshift TO {0}; "
                             "GRANT ALL ON ALL TABLES IN SCHEMA pgshift TO {0}; "
                             "GRANT ALL ON ALL SEQUENCES IN SCHEMA pgshift TO {0}").format(sql.Identifier(writer)))
        params = conninfo.conninfo_to_dict(owner)
        params["user"] = writer
        result = run_pgshift(["backfill", "--table", "t", "--set", "qty = qty + 100"], cwd=project,
                             url=conninfo.make_conninfo(**params))  # type: ignore[arg-type]
        message = _said(result)
        assert result.returncode == 21, message
        assert f"the role {writer} running the backfill is not its owner ({db_name}_owner)" in message
        assert conn.execute("SELECT count(*) FROM t WHERE qty > 100").fetchone() == (0,)
    finally:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(writer)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(writer)))
    # The table's owner without FORCE backfills every row.
    done = run_pgshift(["backfill", "--table", "t", "--set", "qty = qty + 100"], cwd=project, url=owner)
    assert done.returncode == 0, _said(done)
    assert conn.execute("SELECT count(*) FROM t WHERE qty <= 100").fetchone() == (0,)


def test_a_set_that_reads_another_rls_table_is_refused_naming_it(tmp_path: Path, conn: Conn, owner: str) -> None:
    init = ("-- pgshift:up\nCREATE TABLE t (id int PRIMARY KEY, qty int NOT NULL);\n"
            "INSERT INTO t SELECT g, 0 FROM generate_series(1, 5) g;\n"
            "CREATE TABLE rates (tenant int, rate int);\nINSERT INTO rates VALUES (0, 1), (1, 1), (2, 1);\n"
            "ALTER TABLE rates ENABLE ROW LEVEL SECURITY;\nALTER TABLE rates FORCE ROW LEVEL SECURITY;\n"
            "CREATE POLICY only_tenant_0 ON rates USING (tenant = 0);\n")
    project = write_project(tmp_path, {"001_init.sql": init})
    assert run_pgshift(["migrate"], cwd=project, url=owner).returncode == 0
    result = run_pgshift(["backfill", "--table", "t", "--set", "qty = (SELECT sum(rate) FROM rates)"],
                         cwd=project, url=owner)
    message = _said(result)
    assert result.returncode == 21, message  # before: exit 0, every qty 1 instead of 3
    assert 'row-level security policy for table "rates"' in message and "The SET or WHERE reads a table" in message
    assert conn.execute("SELECT count(*) FROM t WHERE qty <> 0").fetchone() == (0,)
