"""The rows that stop a constraint. When ALTER TABLE fails because rows already in the table violate
a CHECK or NOT NULL (SQLSTATE 23514, 23502), the server names no row: "violated by some row"; when a
unique index or constraint cannot be built (23505), it names one duplicated key. After the rollback
pgshift looks for them in a read-only transaction with a time limit, counts them up to a cap, names a
few, and gives the query that lists them all, so the user can correct the data or the migration."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
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
    key: str = ""  # for a unique index: its key, whose values are duplicated (count counts values)

    def sentence(self) -> str:
        took = f"looking for them took over {LOOKUP_TIMEOUT_MS // 1000} s"
        many = "" if self.count is None else f"more than {COUNTED:,}" if self.count > COUNTED else f"{self.count:,}"
        one = self.count == 1
        if self.key and self.count is None:
            found = f"values of {self.key} are duplicated in {self.table}, stopping {self.constraint} ({took})"
        elif self.key:
            found = (f"{many} {'value' if one else 'values'} of {self.key} {'is' if one else 'are'} duplicated in "
                     f"{self.table}, stopping {self.constraint}, e.g. {'; '.join(self.examples)}")
        elif self.count is None:
            found = f"rows of {self.table} violate {self.constraint} ({took})"
        else:
            rows = "row violates" if one else "rows violate"
            found = f"{many} {rows} {self.constraint} in {self.table}, e.g. {'; '.join(self.examples)}"
        return f"{found}. List them with: {self.query}"


def find_violators(conn: psycopg.Connection[object], exc: BaseException | None, statement: str,
                   part: Iterable[str] = (), notify: Callable[[str], None] | None = None) -> Violators | None:
    """:func:`_find_violators`, announced with ``notify`` (the lookup reads the table again, up to
    LOOKUP_TIMEOUT_MS); Ctrl-C skips it, so the failure is still recorded and reported as it is."""
    if not isinstance(exc, _LOOKED_FOR):
        return None

    def announce() -> None:
        if notify is not None:
            notify(f"looking for the rows of {exc.diag.table_name} that stop {_what(exc)} "
                   f"(at most {LOOKUP_TIMEOUT_MS // 1000} s; Ctrl-C skips it)")

    try:
        return _find_violators(conn, exc, statement, part, announce)
    except KeyboardInterrupt:
        return None


_LOOKED_FOR = (pgerrors.CheckViolation, pgerrors.NotNullViolation, pgerrors.UniqueViolation)


def _what(exc: psycopg.Error) -> str:
    if isinstance(exc, pgerrors.NotNullViolation):
        return f"NOT NULL on {exc.diag.column_name}"
    return exc.diag.constraint_name or "the constraint"


def _find_violators(conn: psycopg.Connection[object], exc: psycopg.Error, statement: str,
                    part: Iterable[str], announce: Callable[[], None]) -> Violators | None:
    """The rows violating the CHECK or NOT NULL that ``exc`` (the server's error for the ALTER TABLE
    ``statement`` of a migration whose statements are ``part``) reports, or the key values duplicated
    where the statement builds a unique index or constraint; None when it is not such an error or they
    cannot be looked for (a column the rolled-back statement added, a table gone, a session still in a
    failed transaction)."""
    diag = exc.diag
    if not diag.table_name or not diag.schema_name or conn.closed or conn.broken:
        return None
    body = _one_statement(statement)
    if isinstance(exc, pgerrors.UniqueViolation):
        unique = _unique_key(body, diag.constraint_name or "")
        return _duplicates(conn, exc, unique, announce) if unique is not None else None
    if not isinstance(body, ast.AlterTableStmt):
        return None
    table = sql.Identifier(diag.schema_name, diag.table_name)
    announce()
    try:
        with _looking(conn):
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


@contextmanager
def _looking(conn: psycopg.Connection[object]) -> Iterator[None]:
    """A read-only transaction that waits for no lock and reads for at most LOOKUP_TIMEOUT_MS."""
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(LOOKUP_TIMEOUT_MS)))
        conn.execute("SET LOCAL lock_timeout = 2000")
        yield


def _one_statement(statement: str) -> ast.Node | None:
    try:
        stmts = parse_sql(statement)
    except ParseError:
        return None
    return stmts[0].stmt if len(stmts) == 1 else None


@dataclass(frozen=True)
class _UniqueKey:
    names: list[str]  # how the key's parts are shown: a column's name, an expression's text
    parts: list[sql.Composable]
    predicate: sql.Composable | None  # a partial index's WHERE
    nulls_distinct: bool  # rows with a null key part never conflict (unless NULLS NOT DISTINCT)


def _unique_key(body: ast.Node | None, name: str) -> _UniqueKey | None:
    """The key of the unique index (CREATE UNIQUE INDEX) or UNIQUE / PRIMARY KEY constraint (ALTER TABLE)
    named ``name`` that ``body`` builds, or of its only one."""
    if isinstance(body, ast.IndexStmt) and body.unique and body.indexParams:
        names: list[str] = []
        parts: list[sql.Composable] = []
        for elem in body.indexParams:
            if not isinstance(elem, ast.IndexElem) or (not elem.name and elem.expr is None):
                return None
            if elem.name:
                names.append(elem.name)
                parts.append(sql.Identifier(elem.name))
            elif elem.expr is not None:
                text = str(RawStream()(elem.expr))
                names.append(text)
                parts.append(sql.SQL("({})").format(sql.SQL(text)))
        where = sql.SQL(str(RawStream()(body.whereClause))) if body.whereClause is not None else None
        return _UniqueKey(names, parts, where, not body.nulls_not_distinct)
    if not isinstance(body, ast.AlterTableStmt):
        return None
    keyed = [cmd.def_ for cmd in body.cmds or () if isinstance(cmd, ast.AlterTableCmd)
             and cmd.subtype == AlterTableType.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint)
             and cmd.def_.contype in (ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_PRIMARY)
             and cmd.def_.keys and not cmd.def_.indexname]
    named = [con for con in keyed if con.conname == name]
    chosen = named[0] if named else keyed[0] if len(keyed) == 1 else None
    if chosen is None:
        return None
    columns = [str(key.sval) for key in chosen.keys or () if isinstance(key, ast.String)]
    nulls_distinct = chosen.contype == ConstrType.CONSTR_UNIQUE and not chosen.nulls_not_distinct
    return _UniqueKey(columns, list[sql.Composable](sql.Identifier(c) for c in columns), None, nulls_distinct)


def _duplicates(conn: psycopg.Connection[object], exc: psycopg.Error, key: _UniqueKey,
                announce: Callable[[], None]) -> Violators | None:
    """The key values more than one row holds, where a unique index on ``key`` cannot be built."""
    diag = exc.diag
    table = sql.Identifier(str(diag.schema_name), str(diag.table_name))
    conditions = [sql.SQL("{} IS NOT NULL").format(part) for part in key.parts] if key.nulls_distinct else []
    if key.predicate is not None:
        conditions.append(sql.SQL("({})").format(key.predicate))
    where = sql.SQL(" WHERE {}").format(sql.SQL(" AND ").join(conditions)) if conditions else sql.SQL("")
    grouped = sql.SQL(", ").join(sql.Literal(n) for n in range(1, len(key.parts) + 1))
    listing = sql.SQL("SELECT {parts}, count(*) FROM {table}{where} GROUP BY {grouped} HAVING count(*) > 1;").format(
        parts=sql.SQL(", ").join(key.parts), table=table, where=where, grouped=grouped)
    aliases = [sql.Identifier(f"k{n}") for n in range(len(key.parts))]
    found = sql.SQL(
        "SELECT {shown}, rows, count(*) OVER () FROM (SELECT {parts}, count(*) AS rows FROM {table}{where} "
        "GROUP BY {grouped} HAVING count(*) > 1 LIMIT {cap}) AS found LIMIT {shown_rows}").format(
        shown=sql.SQL(", ").join(sql.SQL("{}::text").format(a) for a in aliases),
        parts=sql.SQL(", ").join(sql.SQL("{} AS {}").format(p, a) for p, a in zip(key.parts, aliases, strict=True)),
        table=table, where=where, grouped=grouped, cap=sql.Literal(COUNTED + 1), shown_rows=sql.Literal(SHOWN))
    label = key.names[0] if len(key.names) == 1 else f"({', '.join(key.names)})"
    constraint = diag.constraint_name or "the unique index"
    announce()
    try:
        with _looking(conn):
            query = listing.as_string(conn)
            try:
                rows = conn.execute(found).fetchall()
            except pgerrors.QueryCanceled:
                return Violators(table.as_string(conn), constraint, query, None, (), label)
    except psycopg.Error:
        return None
    if not rows:
        return None
    examples = tuple(f"{_named(key.names, [_text(v) for v in row[:-2]])} ({row[-2]} rows)"  # type: ignore[index]
                     for row in rows)
    return Violators(table.as_string(conn), constraint, query, int(rows[0][-1]), examples, label)  # type: ignore[index]


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
    examples = tuple(_named(names, [_text(v) for v in row[:-1]]) for row in rows)  # type: ignore[index]
    return int(rows[0][-1]), examples  # type: ignore[index]


def _named(names: list[str], values: list[str]) -> str:
    if len(names) == 1:
        return f"{names[0]} = {values[0]}"
    return f"({', '.join(names)}) = ({', '.join(values)})"


def _text(value: object) -> str:
    return "NULL" if value is None else str(value)
