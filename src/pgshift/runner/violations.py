"""The rows that stop a constraint. When ALTER TABLE fails because rows already in the table violate
a CHECK or NOT NULL (SQLSTATE 23514, 23502), the server names no row: "violated by some row"; when a
unique index or key (23505) or a foreign key (23503) cannot be made, its Detail names one duplicate or
one missing key. After the rollback pgshift looks for all of them in a read-only transaction with a
time limit, counts them up to a cap, names a few, and gives the query that lists them all, so the user
can correct the data or the migration (:func:`find_violators`). ``pgshift check`` asks the same before
migrating: which rules a pending statement puts on the rows there (:func:`row_rules`), and which rows
break them now (:func:`look_for`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from pglast import ast, parse_sql
from pglast.enums import AlterTableType, ConstrType, ObjectType
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
    limit_ms: int = LOOKUP_TIMEOUT_MS  # how long the lookup could read

    def sentence(self) -> str:
        took = f"looking for them took over {self.limit_ms / 1000:g} s"
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


@dataclass(frozen=True)
class UniqueKey:
    names: list[str]  # how the key's parts are shown: a column's name, an expression's text
    parts: list[sql.Composable]
    predicate: sql.Composable | None  # a partial index's WHERE
    nulls_distinct: bool  # rows with a null key part never conflict (unless NULLS NOT DISTINCT)

    @property
    def label(self) -> str:
        return self.names[0] if len(self.names) == 1 else f"({', '.join(self.names)})"


@dataclass(frozen=True)
class ForeignKey:
    columns: list[str]
    schema: str | None  # the referenced table's; None: as search_path finds it
    table: str
    referenced: list[str]  # empty: the referenced table's primary key
    full: bool  # MATCH FULL: a key with some but not all parts null violates it too

    @property
    def shown(self) -> str:
        table = f"{self.schema}.{self.table}" if self.schema else self.table
        return f"FOREIGN KEY ({', '.join(self.columns)}) REFERENCES {table}"


@dataclass(frozen=True)
class RowRule:
    """What the rows already in a table must satisfy for a statement to succeed: no row meets
    ``condition`` (a CHECK, a NOT NULL), no two rows share a value of ``unique``, every row's key of
    ``foreign`` is in the referenced table."""

    schema: str | None  # None: the table as search_path finds it
    table: str
    label: str  # the constraint's name ("" for a CHECK the server will name), or "NOT NULL on <column>"
    condition: sql.Composable | None = None
    unique: UniqueKey | None = None
    foreign: ForeignKey | None = None
    validated: str | None = None  # VALIDATE CONSTRAINT of a constraint neither this statement nor its migration adds
    column: str | None = None  # for NOT NULL: the column
    unnamed: str = ""  # how a constraint without a name is shown until the server names it

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table

    @property
    def shown(self) -> str:
        return self.label or self.unnamed


def row_rules(statement: str, part: Iterable[str] = ()) -> list[RowRule]:
    """The rules a statement makes the server check against the rows already in its table: ALTER TABLE
    ADD CHECK (not NOT VALID), VALIDATE CONSTRAINT of a CHECK, ALTER COLUMN SET NOT NULL, ADD PRIMARY KEY
    / UNIQUE, CREATE UNIQUE INDEX. ``part``: the other statements of its migration, where a CHECK it
    validates may have been added NOT VALID."""
    body = _one_statement(statement)
    if isinstance(body, ast.IndexStmt):
        key = _index_key(body)
        if key is None or body.relation is None:
            return []
        return [RowRule(body.relation.schemaname, str(body.relation.relname), body.idxname or "", unique=key,
                        unnamed=f"a unique index on {key.label}")]
    if not isinstance(body, ast.AlterTableStmt) or body.relation is None or body.objtype != ObjectType.OBJECT_TABLE:
        return []
    schema, table = body.relation.schemaname, str(body.relation.relname)
    rules: list[RowRule] = []
    for cmd in body.cmds or ():
        if not isinstance(cmd, ast.AlterTableCmd):
            continue
        con = cmd.def_ if isinstance(cmd.def_, ast.Constraint) else None
        if cmd.subtype == AlterTableType.AT_SetNotNull and cmd.name:
            rules.append(_not_null(schema, table, cmd.name))
        elif cmd.subtype == AlterTableType.AT_ValidateConstraint and cmd.name:
            added = _added_in_part(part, cmd.name)
            rules.append(replace(added, schema=schema, table=table) if added is not None
                         else RowRule(schema, table, cmd.name, validated=cmd.name))
        elif con is not None and cmd.subtype == AlterTableType.AT_AddConstraint and not con.skip_validation:
            checked = _checked_by(schema, table, con)
            if checked is not None:
                rules.append(checked)
            elif con.contype in (ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_PRIMARY) and con.keys \
                    and not con.indexname:
                columns = [str(k.sval) for k in con.keys if isinstance(k, ast.String)]
                primary = con.contype == ConstrType.CONSTR_PRIMARY
                if primary:
                    rules += [_not_null(schema, table, c) for c in columns]
                rules.append(RowRule(schema, table, con.conname or "", unique=UniqueKey(
                    columns, list[sql.Composable](sql.Identifier(c) for c in columns), None,
                    not primary and not con.nulls_not_distinct),
                    unnamed=f"{'PRIMARY KEY' if primary else 'UNIQUE'} ({', '.join(columns)})"))
    return rules


def _checked_by(schema: str | None, table: str, con: ast.Constraint) -> RowRule | None:
    """The rule a CHECK or FOREIGN KEY constraint puts on the rows of ``table``."""
    if con.contype == ConstrType.CONSTR_CHECK and con.raw_expr is not None:
        expression = str(RawStream()(con.raw_expr))
        return RowRule(schema, table, con.conname or "", condition=_violating(expression),
                       unnamed=f"CHECK ({expression})")
    if con.contype == ConstrType.CONSTR_FOREIGN and con.pktable is not None and con.fk_attrs:
        foreign = ForeignKey([str(a.sval) for a in con.fk_attrs if isinstance(a, ast.String)],
                             con.pktable.schemaname, str(con.pktable.relname),
                             [str(a.sval) for a in con.pk_attrs or () if isinstance(a, ast.String)],
                             con.fk_matchtype == "f")
        return RowRule(schema, table, con.conname or "", foreign=foreign, unnamed=foreign.shown)
    return None


def adds_not_null_column(statement: str, column: str) -> bool:
    """Whether the ALTER TABLE ``statement`` adds ``column`` NOT NULL (or as a primary key) with no DEFAULT,
    identity or generated value: every row the table already has would hold null."""
    body = _one_statement(statement)
    for cmd in body.cmds or () if isinstance(body, ast.AlterTableStmt) else ():
        definition = cmd.def_ if isinstance(cmd, ast.AlterTableCmd) and cmd.subtype == AlterTableType.AT_AddColumn \
            else None
        if not isinstance(definition, ast.ColumnDef) or definition.colname != column:
            continue
        kinds = {con.contype for con in definition.constraints or () if isinstance(con, ast.Constraint)}
        filled = {ConstrType.CONSTR_DEFAULT, ConstrType.CONSTR_IDENTITY, ConstrType.CONSTR_GENERATED}
        return bool(kinds & {ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY}) and not kinds & filled
    return False


def _not_null(schema: str | None, table: str, column: str) -> RowRule:
    return RowRule(schema, table, f"NOT NULL on {column}", condition=sql.SQL("{} IS NULL").format(
        sql.Identifier(column)), column=column)


def _violating(expression: str) -> sql.Composable:
    # A row violates a CHECK when its expression is false; null passes.
    return sql.SQL("NOT ({})").format(sql.SQL(expression))


def _index_key(body: ast.IndexStmt) -> UniqueKey | None:
    if not body.unique or not body.indexParams:
        return None
    names: list[str] = []
    parts: list[sql.Composable] = []
    for elem in body.indexParams:
        if not isinstance(elem, ast.IndexElem):
            return None
        if elem.name:
            names.append(elem.name)
            parts.append(sql.Identifier(elem.name))
        elif elem.expr is not None:
            text = str(RawStream()(elem.expr))
            names.append(text)
            parts.append(sql.SQL("({})").format(sql.SQL(text)))
        else:
            return None
    where = sql.SQL(str(RawStream()(body.whereClause))) if body.whereClause is not None else None
    return UniqueKey(names, parts, where, not body.nulls_not_distinct)


def _added_in_part(part: Iterable[str], name: str) -> RowRule | None:
    """The rule of the CHECK or FOREIGN KEY named ``name`` that one of ``part``'s ALTER TABLE statements
    adds (NOT VALID, to be validated later)."""
    for other in part:
        if name.lower() not in other.lower():
            continue  # a large migration's statements are parsed only where they may add it
        body = _one_statement(other)
        for cmd in body.cmds or () if isinstance(body, ast.AlterTableStmt) else ():
            con = cmd.def_ if isinstance(cmd, ast.AlterTableCmd) else None
            if isinstance(con, ast.Constraint) and con.conname == name:
                checked = _checked_by(None, "", con)
                if checked is not None:
                    return checked
    return None


@dataclass(frozen=True)
class Lookup:
    """What looking for a rule's violating rows found: the rows, none (``found`` None), or nothing
    looked for and why (``skipped``: its table or column does not exist yet)."""

    rule: RowRule
    found: Violators | None = None
    skipped: str = ""


def look_for(conn: psycopg.Connection[object], rule: RowRule, announce: Callable[[], None] = lambda: None,
             limit_ms: int | None = None) -> Lookup:
    """The rows of ``rule``'s table that violate it now, in a read-only transaction of at most ``limit_ms``
    (default LOOKUP_TIMEOUT_MS; at its end ``found.count`` is None)."""
    limit_ms = limit_ms or LOOKUP_TIMEOUT_MS
    try:
        with _looking(conn, limit_ms):
            row = conn.execute("SELECT c.oid::int8, n.nspname, c.relname FROM pg_catalog.pg_class c "
                               "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = "
                               "pg_catalog.to_regclass(%s)",
                               (sql.Identifier(*(p for p in (rule.schema, rule.table) if p)).as_string(conn),)
                               ).fetchone()
            if row is None:
                return Lookup(rule, skipped=f"{rule.name} does not exist yet")
            oid, schema, name = int(row[0]), str(row[1]), str(row[2])  # type: ignore[index]
            table = sql.Identifier(schema, name)
            if rule.validated is not None:
                catalog = _from_catalog(conn, oid, rule)
                if catalog is None:
                    return Lookup(rule, skipped=f"no CHECK or FOREIGN KEY {rule.validated} on {rule.name} yet")
                rule = catalog
            condition = rule.condition
            if rule.foreign is not None:
                orphans = _orphans(conn, table, rule.foreign)
                if isinstance(orphans, str):
                    return Lookup(rule, skipped=orphans)
                condition = orphans
            announce()
            shown = table.as_string(conn)
            if rule.unique is not None:
                return Lookup(rule, _duplicates(conn, table, shown, rule.unique, rule.shown, limit_ms))
            assert condition is not None
            query = sql.SQL("SELECT * FROM {} WHERE {};").format(table, condition).as_string(conn)
            try:
                count, examples = _look(conn, table, condition, _key_columns(conn, oid))
            except pgerrors.QueryCanceled:
                return Lookup(rule, Violators(shown, rule.shown, query, None, (), limit_ms=limit_ms))
    except pgerrors.UndefinedColumn as exc:
        return Lookup(rule, skipped=f"{exc.diag.message_primary} yet")
    except psycopg.Error as exc:
        return Lookup(rule, skipped=exc.diag.message_primary or str(exc))
    return Lookup(rule, Violators(shown, rule.shown, query, count, examples) if count else None)


def _from_catalog(conn: psycopg.Connection[object], oid: int, rule: RowRule) -> RowRule | None:
    """``rule`` (a VALIDATE CONSTRAINT) with the CHECK or FOREIGN KEY it validates, as the catalog has it."""
    found = conn.execute(
        """
        SELECT c.contype::text, pg_catalog.pg_get_expr(c.conbin, c.conrelid),
               ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(num, i)
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num ORDER BY k.i),
               rn.nspname::text, r.relname::text,
               ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS k(num, i)
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.num ORDER BY k.i),
               c.confmatchtype::text
        FROM pg_catalog.pg_constraint c
        LEFT JOIN pg_catalog.pg_class r ON r.oid = c.confrelid
        LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
        WHERE c.conrelid = %s AND c.conname = %s AND c.contype IN ('c', 'f')
        """, (oid, rule.validated)).fetchone()
    if found is None:
        return None
    values: tuple[Any, ...] = tuple(found)  # type: ignore[arg-type]
    kind, expression, columns, ref_schema, ref_table, referenced, match = values
    if kind == "c":
        return replace(rule, condition=_violating(str(expression)), validated=None)
    return replace(rule, foreign=ForeignKey(list(columns), str(ref_schema), str(ref_table), list(referenced),
                                            match == "f"), validated=None)


def _orphans(conn: psycopg.Connection[object], table: sql.Identifier, key: ForeignKey) -> sql.Composable | str:
    """What a row whose ``key`` the referenced table lacks meets (the server's own test for a foreign key,
    MATCH SIMPLE or FULL), or why it cannot be looked for."""
    name = sql.Identifier(*(p for p in (key.schema, key.table) if p))
    row = conn.execute("SELECT pg_catalog.to_regclass(%s)::oid::int8", (name.as_string(conn),)).fetchone()
    if row is None or row[0] is None:  # type: ignore[index]
        return f"{key.table} does not exist yet"
    referenced = key.referenced or _key_columns(conn, int(row[0]))  # type: ignore[index]
    if len(referenced) != len(key.columns):
        return f"{key.table} has no primary key of {len(key.columns)} column(s)"
    mine = [sql.SQL("{}.{}").format(table, sql.Identifier(c)) for c in key.columns]
    matched = sql.SQL(" AND ").join(sql.SQL("r.{} = {}").format(sql.Identifier(theirs), ours)
                                     for theirs, ours in zip(referenced, mine, strict=True))
    missing = sql.SQL("NOT EXISTS (SELECT FROM {} AS r WHERE {})").format(name, matched)
    all_set = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(ours) for ours in mine)
    if not key.full:  # MATCH SIMPLE: a key with a null part is not checked
        return sql.SQL("{} AND {}").format(all_set, missing)
    none_set = sql.SQL(" AND ").join(sql.SQL("{} IS NULL").format(ours) for ours in mine)
    return sql.SQL("NOT ({}) AND (NOT ({}) OR {})").format(none_set, all_set, missing)


def find_violators(conn: psycopg.Connection[object], exc: BaseException | None, statement: str,
                   part: Iterable[str] = (), notify: Callable[[str], None] | None = None) -> Violators | None:
    """After ``exc``, the server's error for ``statement`` (of a migration whose other statements are
    ``part``) rolled back: the rows violating the CHECK or NOT NULL it reports, or the key values
    duplicated where the statement builds a unique index; None when it is not such an error or they
    cannot be found (a column the rolled-back statement added, a table gone, rows that violate it only
    as the statement rewrote them). Announced with ``notify`` (the lookup reads the table again, up to
    LOOKUP_TIMEOUT_MS); Ctrl-C skips it, so the failure is still recorded and reported as it is."""
    if not isinstance(exc, _LOOKED_FOR) or conn.closed or conn.broken:
        return None
    diag = exc.diag
    if not diag.table_name or not diag.schema_name:
        return None
    rule = _rule_for(exc, row_rules(statement, part))
    if rule is None:
        return None
    rule = replace(rule, schema=diag.schema_name, table=diag.table_name)

    def announce() -> None:
        if notify is not None:
            notify(f"looking for the rows of {diag.table_name} that stop {rule.label} "
                   f"(at most {LOOKUP_TIMEOUT_MS // 1000} s; Ctrl-C skips it)")

    try:
        return look_for(conn, rule, announce).found
    except KeyboardInterrupt:
        return None


_LOOKED_FOR = (pgerrors.CheckViolation, pgerrors.NotNullViolation, pgerrors.UniqueViolation,
               pgerrors.ForeignKeyViolation)


def _rule_for(exc: psycopg.Error, rules: list[RowRule]) -> RowRule | None:
    """Which of a statement's rules the server's error is about: by column or constraint name, or the
    only one of its kind (a constraint the server named)."""
    diag = exc.diag
    if isinstance(exc, pgerrors.NotNullViolation):
        return next((r for r in rules if r.column is not None and r.column == diag.column_name), None)
    if isinstance(exc, pgerrors.UniqueViolation):
        of_kind = [r for r in rules if r.unique is not None]
    elif isinstance(exc, pgerrors.ForeignKeyViolation):
        of_kind = [r for r in rules if r.foreign is not None or r.validated is not None]
    else:
        of_kind = [r for r in rules if (r.condition is not None and r.column is None) or r.validated is not None]
    named = [r for r in of_kind if r.label == diag.constraint_name]
    unnamed = [r for r in of_kind if not r.label]
    chosen = named[0] if named else unnamed[0] if len(unnamed) == 1 else None
    if chosen is not None and not chosen.label and diag.constraint_name:
        chosen = replace(chosen, label=diag.constraint_name)
    return chosen


@contextmanager
def _looking(conn: psycopg.Connection[object], limit_ms: int) -> Iterator[None]:
    """A read-only transaction that waits for no lock and reads for at most ``limit_ms``."""
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(limit_ms)))
        conn.execute("SET LOCAL lock_timeout = 2000")
        yield


def _one_statement(statement: str) -> ast.Node | None:
    try:
        stmts = parse_sql(statement)
    except ParseError:
        return None
    return stmts[0].stmt if len(stmts) == 1 else None


def _duplicates(conn: psycopg.Connection[object], table: sql.Identifier, shown: str, key: UniqueKey,
                constraint: str, limit_ms: int) -> Violators | None:
    """The key values more than one row holds, where a unique index on ``key`` cannot be built."""
    conditions = [sql.SQL("{} IS NOT NULL").format(part) for part in key.parts] if key.nulls_distinct else []
    if key.predicate is not None:
        conditions.append(sql.SQL("({})").format(key.predicate))
    where = sql.SQL(" WHERE {}").format(sql.SQL(" AND ").join(conditions)) if conditions else sql.SQL("")
    grouped = sql.SQL(", ").join(sql.Literal(n) for n in range(1, len(key.parts) + 1))
    query = sql.SQL("SELECT {parts}, count(*) FROM {table}{where} GROUP BY {grouped} HAVING count(*) > 1;").format(
        parts=sql.SQL(", ").join(key.parts), table=table, where=where, grouped=grouped).as_string(conn)
    aliases = [sql.Identifier(f"k{n}") for n in range(len(key.parts))]
    found = sql.SQL(
        "SELECT {shown}, rows, count(*) OVER () FROM (SELECT {parts}, count(*) AS rows FROM {table}{where} "
        "GROUP BY {grouped} HAVING count(*) > 1 LIMIT {cap}) AS found LIMIT {shown_rows}").format(
        shown=sql.SQL(", ").join(sql.SQL("{}::text").format(a) for a in aliases),
        parts=sql.SQL(", ").join(sql.SQL("{} AS {}").format(p, a) for p, a in zip(key.parts, aliases, strict=True)),
        table=table, where=where, grouped=grouped, cap=sql.Literal(COUNTED + 1), shown_rows=sql.Literal(SHOWN))
    try:
        rows = conn.execute(found).fetchall()
    except pgerrors.QueryCanceled:
        return Violators(shown, constraint, query, None, (), key.label, limit_ms)
    if not rows:
        return None
    examples = tuple(f"{_named(key.names, [_text(v) for v in row[:-2]])} ({row[-2]} rows)"  # type: ignore[index]
                     for row in rows)
    return Violators(shown, constraint, query, int(rows[0][-1]), examples, key.label)  # type: ignore[index]


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


SHOWN_CHARS = 60  # of each key value in a message: a key can be a long text


def _text(value: object) -> str:
    if value is None:
        return "NULL"
    text = str(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS - 3]}..."
