"""The rows that stop a constraint. When ALTER TABLE fails because rows already in the table violate
a CHECK or NOT NULL (SQLSTATE 23514, 23502), the server names no row: "violated by some row". After
the rollback pgshift looks for a few in a read-only transaction with a time limit, counts them up to
a cap, and gives the query that lists them all, so the user can correct the data or the migration."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
from pglast import ast, parse_sql
from pglast.enums import AlterTableType, ConstrType
from pglast.parser import ParseError
from pglast.stream import RawStream
from psycopg import errors as pgerrors
from psycopg import sql

LOOKUP_TIMEOUT_MS = 30_000  # the lookup reads the table once more, at worst as long as the failed check did
SHOWN = 3
COUNTED = 1000


@dataclass(frozen=True)
class Violators:
    table: str  # as written in SQL
    constraint: str
    query: str  # a SELECT listing every violating row
    count: int | None  # found, up to COUNTED + 1; None when the lookup did not finish in time
    examples: tuple[str, ...]

    def sentence(self) -> str:
        if self.count is None:
            found = (f"rows of {self.table} violate {self.constraint} (looking for them took over "
                     f"{LOOKUP_TIMEOUT_MS // 1000} s)")
        else:
            many = f"more than {COUNTED:,}" if self.count > COUNTED else f"{self.count:,}"
            rows = "row violates" if self.count == 1 else "rows violate"
            found = f"{many} {rows} {self.constraint} in {self.table}, e.g. {'; '.join(self.examples)}"
        return f"{found}. List them with: {self.query}"


def find_violators(conn: psycopg.Connection[object], exc: BaseException | None, statement: str,
                   part: Iterable[str] = ()) -> Violators | None:
    """The rows violating the CHECK or NOT NULL that ``exc`` (the server's error for the ALTER TABLE
    ``statement`` of a migration whose statements are ``part``) reports; None when it is not such an
    error or the rows cannot be looked for (a column the rolled-back statement added, a table gone, a
    session still in a failed transaction)."""
    if not isinstance(exc, (pgerrors.CheckViolation, pgerrors.NotNullViolation)):
        return None
    diag = exc.diag
    if not diag.table_name or not diag.schema_name or not _alters_table(statement):
        return None
    if conn.closed or conn.broken:
        return None
    table = sql.Identifier(diag.schema_name, diag.table_name)
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(LOOKUP_TIMEOUT_MS)))
            conn.execute("SET LOCAL lock_timeout = 2000")
            oid = _oid(conn, diag.schema_name, diag.table_name)
            if oid is None:
                return None
            condition, constraint = _condition(conn, exc, oid, statement, part)
            if condition is None:
                return None
            keys = _key_columns(conn, oid)
            query = sql.SQL("SELECT * FROM {} WHERE {};").format(table, condition).as_string(conn)
            try:
                count, examples = _look(conn, table, condition, keys)
            except pgerrors.QueryCanceled:
                return Violators(table.as_string(conn), constraint, query, None, ())
    except psycopg.Error:
        return None
    if not count:
        return None  # nothing violates it now (the failing statement changed the rows first, as a USING does)
    return Violators(table.as_string(conn), constraint, query, count, examples)


def _alters_table(statement: str) -> bool:
    try:
        stmts = parse_sql(statement)
    except ParseError:
        return False
    return len(stmts) == 1 and isinstance(stmts[0].stmt, ast.AlterTableStmt)


def _oid(conn: psycopg.Connection[object], schema: str, table: str) -> int | None:
    row = conn.execute("SELECT c.oid::int8 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                       "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                       (schema, table)).fetchone()
    return int(row[0]) if row else None  # type: ignore[index]


def _condition(conn: psycopg.Connection[object], exc: psycopg.Error, oid: int, statement: str,
               part: Iterable[str]) -> tuple[sql.Composable | None, str]:
    """The WHERE condition a violating row meets, and the constraint's name as the user knows it."""
    diag = exc.diag
    if isinstance(exc, pgerrors.NotNullViolation):
        if not diag.column_name:
            return None, ""
        return (sql.SQL("{} IS NULL").format(sql.Identifier(diag.column_name)),
                f"NOT NULL on {diag.column_name}")
    name = diag.constraint_name or ""
    if not name:
        return None, ""
    row = conn.execute("SELECT pg_catalog.pg_get_expr(conbin, conrelid) FROM pg_catalog.pg_constraint "
                       "WHERE conrelid = %s AND conname = %s AND contype = 'c'", (oid, name)).fetchone()
    # A CHECK added by an earlier migration is in the catalog; one this migration's rolled-back transaction
    # added is in its text: the failing statement (unnamed too), or another of its statements (NOT VALID).
    expression = str(row[0]) if row else _check_in(statement, name, unnamed=True)  # type: ignore[index]
    for other in part if expression is None else ():
        if name.lower() not in other.lower():
            continue  # a large migration's statements are parsed only where they may add it
        expression = _check_in(other, name, unnamed=False)
        if expression is not None:
            break
    if expression is None:
        return None, name
    # A row violates a CHECK when its expression is false; null passes.
    return sql.SQL("NOT ({})").format(sql.SQL(expression)), name


def _check_in(statement: str, name: str, *, unnamed: bool) -> str | None:
    """The expression of the CHECK named ``name`` that the ALTER TABLE ``statement`` adds, or with
    ``unnamed`` of its only unnamed one (the server named it)."""
    try:
        stmts = parse_sql(statement)
    except ParseError:
        return None
    body = stmts[0].stmt if len(stmts) == 1 else None
    if not isinstance(body, ast.AlterTableStmt):
        return None
    checks = [cmd.def_ for cmd in body.cmds or () if isinstance(cmd, ast.AlterTableCmd)
              and cmd.subtype == AlterTableType.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint)
              and cmd.def_.contype == ConstrType.CONSTR_CHECK]
    named = [con for con in checks if con.conname == name]
    nameless = [con for con in checks if not con.conname] if unnamed else []
    chosen = named[0] if named else nameless[0] if len(nameless) == 1 else None
    return str(RawStream()(chosen.raw_expr)) if chosen is not None and chosen.raw_expr is not None else None


def _key_columns(conn: psycopg.Connection[object], oid: int) -> list[str]:
    """The primary key's columns in order; none when the table has no primary key (rows are named by ctid)."""
    rows = conn.execute(
        "SELECT a.attname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a "
        "ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) "
        "WHERE i.indrelid = %s AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)",
        (oid,)).fetchall()
    return [str(row[0]) for row in rows]  # type: ignore[index]


def _look(conn: psycopg.Connection[object], table: sql.Identifier, condition: sql.Composable,
          keys: list[str]) -> tuple[int, tuple[str, ...]]:
    """How many rows meet ``condition`` (reading no further than COUNTED + 1) and how the first few are named."""
    columns: list[sql.Composable] = [sql.Identifier(k) for k in keys] or [sql.SQL("ctid")]
    shown = sql.SQL(", ").join(sql.SQL("{}::text").format(c) for c in columns)
    query = sql.SQL("SELECT {shown}, count(*) OVER () FROM (SELECT {columns} FROM {table} WHERE {condition} "
                    "LIMIT {cap}) AS found LIMIT {shown_rows}").format(
        shown=shown, columns=sql.SQL(", ").join(columns), table=table, condition=condition,
        cap=sql.Literal(COUNTED + 1), shown_rows=sql.Literal(SHOWN))
    rows = conn.execute(query).fetchall()
    if not rows:
        return 0, ()
    names = keys or ["ctid"]
    examples = tuple(_named(names, [str(v) for v in row[:-1]]) for row in rows)  # type: ignore[index]
    return int(rows[0][-1]), examples  # type: ignore[index]


def _named(names: list[str], values: list[str]) -> str:
    if len(names) == 1:
        return f"{names[0]} = {values[0]}"
    return f"({', '.join(names)}) = ({', '.join(values)})"
