"""The version schema's views enforce, for the role querying them, exactly what the table enforces:
row-level security policies, FORCE ROW LEVEL SECURITY for the owner, column privileges (also on a
renamed column) and a grant revoked after expand. Runs on the real server (PostgreSQL 15+:
security_invoker views)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from pgshift import api
from pgshift.errors import MigrationRefused
from pgshift.ops import service
from pgshift.ops.model import parse_document
from pgshift.ops.plan import capture, plan_phases
from tests.helpers import run_pgshift
from tests.ops.helpers import make_project

Conn = psycopg.Connection[Any]
INIT = """
CREATE TABLE docs (id int PRIMARY KEY, tenant text NOT NULL, body text);
INSERT INTO docs VALUES (1, 'a', 'for a'), (2, 'b', 'for b');
"""
POLICY = """
ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_only ON docs USING (tenant = current_setting('app.tenant', true));
"""
ADD_NOTE = "operations:\n  - add_column: {table: docs, column: {name: note, type: text}}\n"
VS = "public_002"


@pytest.fixture
def role(conn: Conn, db_name: str) -> Iterator[str]:
    name = f"{db_name}_app"
    conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _expand(tmp_path: Path, db_url: str, init: str, ops: str = ADD_NOTE) -> Any:
    settings = make_project(tmp_path, db_url, {"001_init.sql": init, "002_change.ops.yaml": ops})
    api.migrate(settings)
    return settings


def _as(conn: Conn, role: str, query: str, tenant: str = "a") -> list[tuple[Any, ...]]:
    """Run a query as ``role`` with the app's tenant setting, in a transaction rolled back afterwards."""
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        conn.execute("SELECT set_config('app.tenant', %s, true)", (tenant,))
        return conn.execute(query).fetchall()


def test_views_apply_the_tables_row_level_security(tmp_path: Path, db_url: str, conn: Conn, role: str) -> None:
    settings = _expand(tmp_path, db_url, INIT + POLICY + f"GRANT SELECT, INSERT ON docs TO \"{role}\";\n")
    assert _as(conn, role, "SELECT id FROM public.docs") == [(1,)]
    assert _as(conn, role, f"SELECT id FROM {VS}.docs") == [(1,)]  # was [(1,), (2,)]: every tenant's rows
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        _as(conn, role, f"INSERT INTO {VS}.docs (id, tenant) VALUES (3, 'b')")  # the policy's check applies too
    assert _as(conn, role, f"INSERT INTO {VS}.docs (id, tenant, note) VALUES (3, 'a', 'v2') RETURNING id") == [(3,)]
    service.contract(settings)


def test_views_apply_force_row_level_security_to_the_owner(tmp_path: Path, db_url: str, conn: Conn,
                                                            role: str) -> None:
    settings = _expand(tmp_path, db_url, INIT + POLICY + "ALTER TABLE docs FORCE ROW LEVEL SECURITY;\n"
                       f"ALTER TABLE docs OWNER TO \"{role}\";\n")
    assert _as(conn, role, "SELECT id FROM public.docs") == [(1,)]
    assert _as(conn, role, f"SELECT id FROM {VS}.docs") == [(1,)]
    service.contract(settings)


def test_column_privileges_hold_through_the_views_and_follow_a_renamed_column(tmp_path: Path, db_url: str,
                                                                               conn: Conn, role: str) -> None:
    ops = "operations:\n  - rename_column: {table: docs, from: tenant, to: tenant_key}\n"
    init = INIT + f"GRANT SELECT (id, tenant) ON docs TO \"{role}\";\n"
    project = make_project(tmp_path, db_url, {"001_init.sql": init, "002_change.ops.yaml": ops}).base_dir
    result = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert f"role {role} may read only columns id, tenant of public.docs" in said, said
    # Never more than the table allows: body was never granted, and PostgreSQL checks every column the
    # view names, so the view refuses the role outright (the warning above says so).
    for query in (f"SELECT body FROM {VS}.docs", f"SELECT id FROM {VS}.docs"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as(conn, role, query)
    assert _as(conn, role, "SELECT id, tenant FROM public.docs ORDER BY id") == [(1, "a"), (2, "b")]
    assert run_pgshift(["contract"], cwd=project, url=db_url).returncode == 0
    # The renamed column keeps the column privilege it had under its old name.
    assert _as(conn, role, "SELECT id, tenant_key FROM public.docs ORDER BY id") == [(1, "a"), (2, "b")]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as(conn, role, "SELECT body FROM public.docs")


def test_a_role_without_a_grant_reads_nothing_through_the_views(tmp_path: Path, db_url: str, conn: Conn,
                                                                role: str) -> None:
    settings = _expand(tmp_path, db_url, INIT + f"GRANT SELECT ON docs TO \"{role}\";\n")
    assert _as(conn, role, f"SELECT count(*) FROM {VS}.docs") == [(2,)]
    conn.execute(sql.SQL("REVOKE SELECT ON docs FROM {}").format(sql.Identifier(role)))  # after expand
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="docs"):
        _as(conn, role, f"SELECT count(*) FROM {VS}.docs")
    other = f"{role}_none"
    conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(other)))
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as(conn, other, f"SELECT count(*) FROM {VS}.docs")
    finally:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(other)))
    service.contract(settings)


def test_before_postgresql_15_a_view_over_an_rls_table_is_refused(conn: Conn) -> None:
    """Only PostgreSQL 15 is installed here, so this runs the planner on catalog facts captured from the
    real server with the server version read as 14: the refusal must come before any step exists."""
    conn.execute(INIT + POLICY)
    ops = parse_document(yaml.safe_load(ADD_NOTE), "002_change.ops.yaml")
    captured = capture(conn, ops)
    assert captured.server_version >= 150000 and captured.tables["docs"].rights.rls is True
    assert "security_invoker = true" in plan_phases(ops, "002", captured).expand[-1].statements[1].as_string(conn)
    with pytest.raises(MigrationRefused, match=r"public\.docs has row-level security.*PostgreSQL 14"):
        plan_phases(ops, "002", dataclasses.replace(captured, server_version=140011))
    conn.execute("ALTER TABLE docs DISABLE ROW LEVEL SECURITY")
    plain = plan_phases(ops, "002", dataclasses.replace(capture(conn, ops), server_version=140011))
    assert "security_invoker" not in plain.expand[-1].statements[1].as_string(conn)


def test_a_renamed_tables_old_name_keeps_the_app_roles_rights_and_policies(
        tmp_path: Path, db_url: str, conn: Conn, role: str) -> None:
    init = INIT + POLICY + (f'GRANT SELECT, INSERT ON docs TO "{role}";\n'
                            f'GRANT UPDATE (body) ON docs TO "{role}";\n')
    _expand(tmp_path, db_url, init, "operations:\n  - rename_table: {from: docs, to: documents}\n")
    # The old app version still queries `docs`, now a view on `documents`, as the same non-owner role.
    assert _as(conn, role, "SELECT id FROM docs ORDER BY id") == [(1,)]  # the tenant policy still applies
    assert _as(conn, role, "SELECT id FROM documents ORDER BY id") == [(1,)]
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        conn.execute("SELECT set_config('app.tenant', 'a', true)")
        conn.execute("INSERT INTO docs (id, tenant, body) VALUES (3, 'a', 'new')")
        conn.execute("UPDATE docs SET body = 'edited' WHERE id = 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # only body was granted for UPDATE
            conn.execute("UPDATE docs SET tenant = 'b' WHERE id = 1")
