"""One statement analysis (pgshift.migrations.analysis): the server, the runner and lint rule PS004
agree on which statements cannot run inside a transaction block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgshift.migrations.classify import autocommit_reason
from tests.lint.helpers import fired, lint_snippet

SETUP = """
CREATE TABLE t (a int);
CREATE INDEX t_a ON t (a);
CREATE TABLE m (a int) PARTITION BY RANGE (a);
CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (10);
"""
STATEMENTS = [
    "CREATE INDEX CONCURRENTLY t_a2 ON t (a)",
    "DROP INDEX CONCURRENTLY t_a",
    "REINDEX (CONCURRENTLY) TABLE t",
    "REINDEX TABLE t",
    "VACUUM t",
    "VACUUM (FULL) t",
    "ANALYZE t",
    "ALTER SYSTEM SET work_mem = '64MB'",
    "CREATE DATABASE pgshift_never_made",
    "DROP DATABASE IF EXISTS pgshift_never_made",
    "CREATE TABLESPACE pgshift_never_made LOCATION '/nonexistent'",
    "DROP TABLESPACE IF EXISTS pgshift_never_made",
    "ALTER TABLE m DETACH PARTITION m1 CONCURRENTLY",
    "ALTER TABLE m DETACH PARTITION m1",
    "ALTER TABLE t ADD COLUMN b int",
    "INSERT INTO t VALUES (1)",
    "CREATE TYPE e AS ENUM ('a')",
]


def _refused_in_a_transaction(conn: psycopg.Connection[Any], sql: str) -> bool:
    conn.execute(SETUP)
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(sql)
    except psycopg.errors.ActiveSqlTransaction:
        return True
    finally:
        conn.execute("DROP TABLE IF EXISTS t, m CASCADE")
    return False


@pytest.mark.parametrize("sql", STATEMENTS)
def test_the_runner_and_ps004_know_what_the_server_refuses_in_a_transaction(
    sql: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    major = conn.info.server_version // 10000
    refused = _refused_in_a_transaction(conn, sql)
    assert (autocommit_reason(sql, major) is not None) == refused, sql
    # In a transactional migration with another statement, PS004 flags exactly those.
    report = lint_snippet(f"CREATE TABLE other (a int);\n{sql};", tmp_path, setup=SETUP, pg_version=major)
    assert bool(fired(report, "PS004")) == refused, report.to_json()
