"""The shape an operations migration declares: the catalog its contract must reach.

Each operation says, as plain DDL, what it leaves in the schema once contracted
(``Operation.schema_sql(schema, contracted=True)``: ADD COLUMN with its default and NOT NULL, the
renamed column, the validated constraint, ...). Run on the database as it stands before the expand,
in one transaction that is rolled back, that DDL gives the declared shape as a catalog snapshot
(:mod:`pgshift.rehearsal.catalog`); the real expand → contract, with its version-schema views, sync
triggers, NOT VALID checks and concurrent index builds, must end in exactly that snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from pgshift.rehearsal.catalog import Snapshot, snapshot

if TYPE_CHECKING:
    from pgshift.ops.model import OpsFile

_NOT_IN_A_TRANSACTION = "25001"  # active_sql_transaction: e.g. CREATE INDEX CONCURRENTLY in a `sql` operation


@dataclass
class DeclaredShape:
    """The declared catalog, or why there is none: ``skipped`` (a statement that cannot run in a transaction
    block, so the shape cannot be taken and rolled back) or ``error`` (a declared statement failed)."""

    snapshot: Snapshot | None
    skipped: str | None = None
    error: str | None = None


def declared_shape(conn: psycopg.Connection[Any], ops: OpsFile, *, history_schema: str = "pgshift") -> DeclaredShape:
    """The catalog ``ops`` declares once contracted, from the database ``conn`` is on as it stands now (before
    the expand). Nothing is kept: the tables are emptied first (a declared NOT NULL must not depend on the
    rows a test left) and everything is rolled back."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise ValueError("declared_shape needs a connection outside a transaction")
    autocommit = conn.autocommit
    conn.autocommit = False
    try:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> %s", (history_schema,)).fetchall()
        if tables:
            conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(str(s), str(t)) for s, t in tables)))
        for number, operation in enumerate(ops.operations, 1):
            for statement in operation.schema_sql(ops.schema, True):
                text = statement if isinstance(statement, str) else statement.as_string(conn)
                try:
                    conn.execute(text)
                except psycopg.Error as exc:
                    where = f"operation {number} ({operation.kind}): {' '.join(text.split())[:200]}"
                    if exc.sqlstate == _NOT_IN_A_TRANSACTION:
                        return DeclaredShape(None, skipped=f"{where} cannot run in a transaction block")
                    return DeclaredShape(None, error=f"{where}: {str(exc).strip()}")
        return DeclaredShape(snapshot(conn, history_schema=history_schema))
    finally:
        conn.rollback()
        conn.autocommit = autocommit
