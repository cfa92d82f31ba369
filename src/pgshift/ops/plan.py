"""Turn operations into the steps of each phase: expand, contract and abort.

Every step is either one short transaction (its progress recorded in the same transaction), one
statement that must run outside a transaction (CREATE INDEX CONCURRENTLY; written so a rerun is
harmless), or a resumable backfill. Steps depend only on the operations and on the catalog facts
captured before expand started, so a rerun after a crash rebuilds the same list and continues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from pglast import ast, parse_sql
from pglast.stream import RawStream
from pglast.visitors import Visitor
from psycopg import sql

from pgshift.errors import MigrationRefused, MigrationSourceError
from pgshift.migrations.splitter import split_sql
from pgshift.ops.model import Op, OpsFile, column_definition, is_constant
from pgshift.ops.sync import SyncRule, create_sync, drop_sync, sync_names
from pgshift.runner.backfill import BackfillSpec
from pgshift.runner.names import clip, fit, qualified

# The step engine's steps live in the runner layer; `from pgshift.ops.plan import Step` keeps working.
from pgshift.runner.steps import Step as Step
from pgshift.runner.steps import StepKind as StepKind


@dataclass
class Phases:
    expand: list[Step]
    contract: list[Step]
    abort: list[Step]
    version_schema: str
    warnings: list[str] = field(default_factory=list)
    # The leading contract steps abort can still undo (validations): a contract that fails within
    # them leaves the migration expanded, so `pgshift abort` keeps working.
    contract_undoable: int = 0


def version_schema_name(ops: OpsFile, version: str) -> str:
    return clip(ops.version_schema) if ops.version_schema else fit(ops.schema, version)


def _name(*parts: str) -> str:
    """A generated object name within PostgreSQL's 63-byte limit, distinct from other long ones."""
    return fit(*parts)


# -- capture: the catalog facts expand/abort depend on -----------------------------------------
def capture(conn: psycopg.Connection[Any], ops: OpsFile) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for o in ops.operations:
        table = o.table
        if table and table not in tables:
            rows = conn.execute(
                """
                SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                       pg_get_expr(d.adbin, d.adrelid), a.attidentity <> '' OR a.attgenerated <> '',
                       (SELECT format('COLLATE %%I.%%I', cn.nspname, co.collname)
                        FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                        WHERE co.oid = a.attcollation AND a.attcollation <> ty.typcollation),
                       col_description(a.attrelid, a.attnum),
                       nullif(a.attstattarget, -1),
                       CASE WHEN a.attstorage <> ty.typstorage THEN a.attstorage::text END,
                       -- attcompression is PostgreSQL 14+: read through to_jsonb, NULL before
                       CASE to_jsonb(a) ->> 'attcompression' WHEN 'p' THEN 'pglz' WHEN 'l' THEN 'lz4' END
                FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
                LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                WHERE a.attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND a.attnum > 0
                  AND NOT a.attisdropped ORDER BY a.attnum
                """, (ops.schema, table)).fetchall()
            if rows:
                tables[table] = {"columns": [{"name": r[0], "type": r[1], "notnull": r[2], "default": r[3],
                                              "special": r[4], "collate": r[5], "comment": r[6],
                                              "statistics": r[7], "storage": r[8], "compression": r[9]}
                                             for r in rows],
                                 "grants": _table_grants(conn, ops.schema, table),
                                 "column_grants": _column_grants(conn, ops.schema, table),
                                 **_security(conn, ops.schema, table),
                                 "indexes": _table_indexes(conn, ops.schema, table),
                                 **_foreign_keys(conn, ops.schema, table),
                                 **_checks_and_exclusions(conn, ops.schema, table)}
    # A renamed table keeps its old name as a view: the app roles need the same rights on it.
    renamed = {str(o.get("from")): {"grants": _table_grants(conn, ops.schema, str(o.get("from"))),
                                    "column_grants": _column_grants(conn, ops.schema, str(o.get("from"))),
                                    **_security(conn, ops.schema, str(o.get("from")))}
               for o in ops.operations if o.kind == "rename_table"}
    return {"tables": tables, "schema_usage": _schema_usage(conn, ops.schema),
            "server_version": conn.info.server_version, "renamed": renamed}


# Who may use the tables: the version schema's views get the same rights, or an app role that is
# not the owner would get "permission denied" the moment its new version switches over.
_GRANTEE = "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END"


def _table_grants(conn: psycopg.Connection[Any], schema: str, table: str) -> list[list[Any]]:
    rows = conn.execute(
        f"""
        SELECT {_GRANTEE}, a.privilege_type, a.is_grantable
        FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
        WHERE c.oid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND a.grantee <> c.relowner
        ORDER BY 1, 2
        """, (schema, table)).fetchall()
    return [[str(r[0]), str(r[1]), bool(r[2])] for r in rows]


def _column_grants(conn: psycopg.Connection[Any], schema: str, table: str) -> list[list[Any]]:
    """Column-level privileges (GRANT SELECT (col) ...): [grantee, privilege, column, grantable]."""
    rows = conn.execute(
        f"""
        SELECT {_GRANTEE}, a.privilege_type, t.attname::text, a.is_grantable
        FROM pg_attribute t, aclexplode(t.attacl) a
        WHERE t.attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND t.attnum > 0
          AND NOT t.attisdropped AND t.attacl IS NOT NULL
        ORDER BY 1, 2, 3
        """, (schema, table)).fetchall()
    return [[str(r[0]), str(r[1]), str(r[2]), bool(r[3])] for r in rows]


def _security(conn: psycopg.Connection[Any], schema: str, table: str) -> dict[str, Any]:
    """Row-level security and the owner: the version schema's views must enforce what the table does."""
    row = conn.execute(
        "SELECT c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner), current_user::text "
        "FROM pg_class c WHERE c.oid = to_regclass(format('%%I.%%I', %s::text, %s::text))", (schema, table)).fetchone()
    if row is None:
        return {}
    return {"rls": bool(row[0]), "force_rls": bool(row[1]), "owner": str(row[2]), "runner": str(row[3])}


def _table_indexes(conn: psycopg.Connection[Any], schema: str, table: str) -> list[dict[str, Any]]:
    """Valid indexes with their definition, every column they use and the PRIMARY KEY / UNIQUE
    constraint they back. Key columns come from indkey; columns in expressions and predicates from
    pg_depend (a constraint's index has its column dependencies on the constraint instead)."""
    rows = conn.execute(
        """
        SELECT c.relname::text, pg_get_indexdef(i.indexrelid),
               array(SELECT a.attname::text FROM pg_attribute a
                     WHERE a.attrelid = i.indrelid AND a.attnum > 0
                       AND (a.attnum = ANY (i.indkey::int2[])
                            OR a.attnum IN (SELECT d.refobjsubid FROM pg_depend d
                                            WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
                                              AND d.refobjid = i.indrelid))),
               k.conname::text, k.contype::text, coalesce(k.condeferrable, false), coalesce(k.condeferred, false)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u')
        WHERE i.indrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND i.indisvalid
        ORDER BY 1
        """, (schema, table)).fetchall()
    return [{"name": r[0], "definition": r[1], "columns": list(r[2]),
             "constraint": {"name": r[3], "type": r[4], "deferrable": r[5], "deferred": r[6]} if r[3] else None}
            for r in rows]


def _foreign_keys(conn: psycopg.Connection[Any], schema: str, table: str) -> dict[str, list[dict[str, Any]]]:
    """The table's own foreign keys (definition, referencing columns) and those of any table that
    reference it (referenced columns). A self-reference is both."""
    rows = conn.execute(
        """
        WITH t AS (SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) AS oid)
        SELECT c.conname::text, c.conrelid::regclass::text, pg_get_constraintdef(c.oid),
               c.conrelid = t.oid, c.confrelid = t.oid,
               array(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.conrelid
                     AND a.attnum = ANY (c.conkey)),
               array(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.confrelid
                     AND a.attnum = ANY (c.confkey)),
               c.convalidated
        FROM pg_constraint c, t
        WHERE c.contype = 'f' AND t.oid IN (c.conrelid, c.confrelid)
        ORDER BY 1
        """, (schema, table)).fetchall()
    return {
        "foreign_keys": [{"name": r[0], "definition": r[2], "columns": list(r[5]), "validated": r[7]}
                         for r in rows if r[3]],
        "referenced_by": [{"name": r[0], "table": r[1], "columns": list(r[6])} for r in rows if r[4]],
    }


def _checks_and_exclusions(conn: psycopg.Connection[Any], schema: str, table: str) -> dict[str, list[dict[str, Any]]]:
    """The table's CHECK constraints (definition, columns, validated) and its exclusion
    constraints (columns). DROP COLUMN drops both silently, so a moved column must take them along."""
    rows = conn.execute(
        """
        SELECT c.conname::text, c.contype::text, pg_get_constraintdef(c.oid), c.convalidated,
               array(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.conrelid
                     AND a.attnum = ANY (c.conkey))
        FROM pg_constraint c
        WHERE c.conrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND c.contype IN ('c', 'x')
        ORDER BY 1
        """, (schema, table)).fetchall()
    return {
        "checks": [{"name": r[0], "definition": r[2], "validated": r[3], "columns": list(r[4])}
                   for r in rows if r[1] == "c"],
        "exclusions": [{"name": r[0], "columns": list(r[4])} for r in rows if r[1] == "x"],
    }


def _constraint_clause(definition: str) -> ast.Constraint:
    stmt = parse_sql(f"ALTER TABLE t ADD CONSTRAINT c {definition}")[0].stmt
    assert isinstance(stmt, ast.AlterTableStmt), definition
    con = stmt.cmds[0].def_  # type: ignore[index]
    assert isinstance(con, ast.Constraint), definition
    return con


class _OnNewColumns(Visitor):
    """Points column references (and index elements) at the new columns (old -> new name)."""

    def __init__(self, moved: dict[str, str]) -> None:
        self.moved = moved

    def visit_IndexElem(self, ancestors: Any, node: ast.IndexElem) -> None:
        if node.name in self.moved:
            node.name = self.moved[node.name]

    def visit_ColumnRef(self, ancestors: Any, node: ast.ColumnRef) -> None:
        fields = node.fields or ()
        if len(fields) == 1 and isinstance(fields[0], ast.String) and fields[0].sval in self.moved:
            node.fields = (ast.String(sval=self.moved[fields[0].sval]),)


def carried_check(definition: str, moved: dict[str, str], name: str) -> str:
    """A CHECK constraint (pg_get_constraintdef) on the new columns, named ``name`` and NOT VALID:
    the clause for ``ALTER TABLE ... ADD``; rewritten on libpg_query's tree, not as text."""
    con = _constraint_clause(definition)
    _OnNewColumns(moved)(con)
    con.conname, con.skip_validation, con.initially_valid = name, True, False
    return str(RawStream()(con))


def carried_foreign_key(definition: str, moved: dict[str, str], name: str) -> str:
    """A foreign key (pg_get_constraintdef) on the new columns (``moved``: old -> new), named
    ``name`` and NOT VALID: the constraint clause for ``ALTER TABLE ... ADD``."""
    con = _constraint_clause(definition)
    con.fk_attrs = tuple(ast.String(sval=moved.get(a.sval, a.sval)) for a in con.fk_attrs or ())
    con.conname, con.skip_validation, con.initially_valid = name, True, False
    return str(RawStream()(con))


def carried_index(definition: str, moved: dict[str, str], name: str) -> str:
    """``definition`` (pg_get_indexdef) rebuilt on the new columns (``moved``: old -> new name),
    named ``name``, built CONCURRENTLY IF NOT EXISTS; rewritten on libpg_query's tree, not as text."""
    stmt = parse_sql(definition)[0].stmt
    assert isinstance(stmt, ast.IndexStmt), definition
    _OnNewColumns(moved)(stmt)
    stmt.idxname, stmt.concurrent, stmt.if_not_exists = name, True, True
    return str(RawStream()(stmt))


def _schema_usage(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    rows = conn.execute(
        f"""
        SELECT {_GRANTEE}
        FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
        WHERE n.nspname = %s AND a.privilege_type = 'USAGE' AND a.grantee <> n.nspowner
        ORDER BY 1
        """, (schema,)).fetchall()
    return [str(r[0]) for r in rows]


_VIEW_PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER",
                              "MAINTAIN"})


def _role(name: str) -> sql.Composable:
    return sql.SQL("PUBLIC") if name == "PUBLIC" else sql.Identifier(name)


def _column(captured: dict[str, Any], o: Op, name: str) -> dict[str, Any]:
    table = captured["tables"].get(o.table or "")
    if table is None:
        raise MigrationSourceError(f"{o.where}: table {o.table!r} does not exist.")
    for column in table["columns"]:
        if column["name"] == name:
            return dict(column)
    raise MigrationSourceError(f"{o.where}: column {name!r} does not exist in table {o.table!r}.")


# -- the planner -----------------------------------------------------------------------------
class Planner:
    def __init__(self, ops: OpsFile, version: str, captured: dict[str, Any]) -> None:
        self.ops = ops
        self.version = version
        self.captured = captured
        self.schema = ops.schema
        self.vschema = version_schema_name(ops, version)
        # New-version column layout per table: [(visible name, physical name)], for the views.
        self.layout: dict[str, list[tuple[str, str]]] = {
            t: [(c["name"], c["name"]) for c in info["columns"]] for t, info in captured["tables"].items()}
        self.view_tables: list[str] = []
        self.expand_steps: list[Step] = []
        self.backfills: list[Step] = []
        self.contract_steps: list[Step] = []
        # Contract: validations first (weak locks), then per table one transaction that drops every sync
        # trigger before any old column (a trigger may read any column), then the rest.
        self.validations: list[Step] = []
        self.finish_triggers: dict[str, list[sql.Composable]] = {}
        self.finish: dict[str, list[sql.Composable]] = {}
        self.abort_steps: list[Step] = []
        self.moved: dict[str, dict[str, str]] = {}  # table -> {old column: new physical column}
        self.warnings: list[str] = []

    def t(self, table: str) -> sql.Identifier:
        return sql.Identifier(self.schema, table)

    def label(self, table: str) -> str:
        """Quoted where needed: lock_tables labels are looked up with to_regclass."""
        return qualified(self.schema, table)

    def plan(self) -> Phases:
        for index, o in enumerate(self.ops.operations):
            getattr(self, f"_{o.kind}")(index, o)
        expand = list(self.expand_steps)
        if self.view_tables:
            expand.append(self._views_step())
            # Abort drops the views first, so nothing depends on the columns it removes.
            self.abort_steps.append(Step(f"drop version schema {self.vschema}", "tx", [
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.vschema))]))
        expand += self.backfills
        renames: dict[str, list[sql.Composable]] = {}
        for table, moved in self.moved.items():
            steps, renames[table] = self._carry_indexes(table, moved)
            con_steps, con_renames = self._carry_constraints(table, moved)
            expand += steps + con_steps
            renames[table] += con_renames
        contract = list(self.validations)
        for table in dict.fromkeys([*self.finish_triggers, *self.finish]):
            contract.append(Step(f"finish {self.label(table)}: drop sync triggers and old columns", "tx",
                                 [*self.finish_triggers.get(table, []), *self.finish.get(table, []),
                                  *renames.get(table, [])], [self.label(table)]))
        contract += self.contract_steps
        contract.append(Step(f"drop version schema {self.vschema}", "tx", [
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.vschema))]))
        abort = self.abort_steps[-1:] if self.view_tables else []
        abort += list(reversed(self.abort_steps[:-1] if self.view_tables else self.abort_steps))
        return Phases(expand, contract, abort, self.vschema, self.warnings, len(self.validations))

    # -- helpers ---------------------------------------------------------------------------
    def _views_step(self) -> Step:
        statements: list[sql.Composable] = [
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.vschema))]
        warnings: list[str] = []
        for table in self.view_tables:
            info = self.captured["tables"].get(table, {})
            columns = sql.SQL(", ").join(sql.SQL("{} AS {}").format(sql.Identifier(phys), sql.Identifier(vis))
                                         for vis, phys in self.layout[table])
            statements.append(sql.SQL("CREATE OR REPLACE VIEW {} {}AS SELECT {} FROM {}").format(
                sql.Identifier(self.vschema, table), self._invoker(table), columns, self.t(table)))
            for grantee, privilege, grantable in info.get("grants", []):
                if privilege not in _VIEW_PRIVILEGES:
                    continue
                statements.append(sql.SQL("GRANT {} ON {} TO {}{}").format(
                    sql.SQL(privilege), sql.Identifier(self.vschema, table), _role(grantee),
                    sql.SQL(" WITH GRANT OPTION" if grantable else "")))
            # Column privileges follow the column to its name in the new version.
            origin = {new: old for old, new in self.moved.get(table, {}).items()}
            for vis, phys in self.layout[table]:
                for grantee, privilege, column, grantable in info.get("column_grants", []):
                    if column == origin.get(phys, phys):
                        statements.append(sql.SQL("GRANT {} ({}) ON {} TO {}{}").format(
                            sql.SQL(privilege), sql.Identifier(vis), sql.Identifier(self.vschema, table),
                            _role(grantee), sql.SQL(" WITH GRANT OPTION" if grantable else "")))
            warnings += self._column_only_readers(table, info)
            if info.get("owner") and info.get("owner") != info.get("runner"):  # the owner keeps its table's rights
                statements.append(sql.SQL("GRANT ALL ON {} TO {}").format(
                    sql.Identifier(self.vschema, table), sql.Identifier(info["owner"])))
        for grantee in self.captured.get("schema_usage", []):
            statements.append(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier(self.vschema), _role(grantee)))
        return Step(f"create version schema {self.vschema}", "tx", statements, warning=" ".join(warnings) or None)

    def _column_only_readers(self, table: str, info: dict[str, Any]) -> list[str]:
        """Roles that may read only some columns of the table. PostgreSQL checks a security_invoker view's
        every column against the querying role, so such a role is refused the whole view: say so."""
        if int(self.captured.get("server_version", 0)) < 150000:
            return []
        readers = {g for g, p, _ in info.get("grants", []) if p == "SELECT"}
        partial: dict[str, list[str]] = {}
        for grantee, privilege, column, _ in info.get("column_grants", []):
            if privilege == "SELECT" and grantee not in readers:
                partial.setdefault(grantee, []).append(column)
        return [f"role {role} may read only columns {', '.join(columns)} of {self.label(table)}: the view "
                f"{self.vschema}.{table} refuses it (PostgreSQL checks every column a security_invoker view "
                "names), so that role reads the table directly until contract." for role, columns in partial.items()]

    def _invoker(self, table: str) -> sql.Composable:
        """A view runs with its owner's rights unless security_invoker (PostgreSQL 15+): then row-level
        security, FORCE ROW LEVEL SECURITY, column privileges and a revoked grant apply to whoever queries
        it, exactly as on the table. Before 15 a view over a table with row-level security would show
        every row to every role, so that is refused."""
        if int(self.captured.get("server_version", 0)) >= 150000:
            return sql.SQL("WITH (security_invoker = true) ")
        if self.captured["tables"].get(table, {}).get("rls"):
            raise MigrationRefused(
                f"Table {self.label(table)} has row-level security, and this server (PostgreSQL "
                f"{int(self.captured['server_version']) // 10000}) cannot make the version schema's view "
                f"{self.vschema}.{table} enforce it: a view before PostgreSQL 15 runs with its owner's rights, so "
                "every role would see every row through it. Nothing was changed.",
                hint="upgrade to PostgreSQL 15 or later (views with security_invoker), or make this change with a "
                "plain SQL migration.")
        return sql.SQL("")

    def _touch_layout(self, table: str) -> list[tuple[str, str]]:
        if table not in self.layout:
            raise MigrationSourceError(f"table {table!r} does not exist in schema {self.schema}.")
        if table not in self.view_tables:
            self.view_tables.append(table)
        return self.layout[table]

    def _old_namespace(self, table: str) -> dict[str, str]:
        return {c["name"]: c["name"] for c in self.captured["tables"][table]["columns"]}

    def _new_namespace(self, table: str) -> dict[str, str]:
        return dict(self.layout.get(table, []))

    def _sync(self, index: int, table: str, rule: SyncRule) -> tuple[list[sql.Composable], list[sql.Composable]]:
        func, trigger = sync_names(self.version, index, table)
        create = create_sync(self.t(table), sql.Identifier(self.schema, func), sql.Identifier(trigger), rule,
                             self.vschema)
        drop = drop_sync(self.t(table), sql.Identifier(self.schema, func), sql.Identifier(trigger))
        return create, drop

    def _backfill(self, index: int, table: str, touch: str, where: str) -> None:
        spec = BackfillSpec(table, sql_set_self(touch), where, job=f"{self.version}:{index}:{table}",
                            version=self.version, schema=self.schema)
        self.backfills.append(Step(f"backfill {self.label(table)}", "backfill", backfill=spec))

    def _not_null_check(self, table: str, column: str) -> str:
        return _name("_pgshift_nn", table, column)

    def _contract_not_null(self, table: str, column: str, check: str, extra: list[sql.Composable]) -> None:
        """VALIDATE (weak lock, scans) then SET NOT NULL (instant thanks to the valid CHECK, PG12+)."""
        self.validations.append(Step(f"validate NOT NULL check on {table}.{column}", "tx", [
            sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(self.t(table), sql.Identifier(check))],
            weak_lock_tables=[self.label(table)]))
        self.finish_triggers.setdefault(table, []).extend(extra)
        self.finish.setdefault(table, []).extend([
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(self.t(table), sql.Identifier(column)),
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(self.t(table), sql.Identifier(check)),
        ])

    # -- operations ------------------------------------------------------------------------
    def _create_table(self, index: int, o: Op) -> None:
        table = str(o.get("table"))
        parts: list[sql.Composable] = [column_definition(c) for c in o.get("columns")]
        if o.get("primary_key"):
            parts.append(sql.SQL("PRIMARY KEY ({})").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in o.get("primary_key"))))
        self.expand_steps.append(Step(f"create table {table}", "tx", [
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(self.t(table), sql.SQL(", ").join(parts))]))
        self.abort_steps.append(Step(f"drop table {table}", "tx", [
            sql.SQL("DROP TABLE IF EXISTS {}").format(self.t(table))]))
        self.layout[table] = [(str(c["name"]), str(c["name"])) for c in o.get("columns")]

    def _drop_table(self, index: int, o: Op) -> None:
        table = str(o.get("table"))
        self.contract_steps.append(Step(f"drop table {table}", "tx", [
            sql.SQL("DROP TABLE IF EXISTS {}").format(self.t(table))], [self.label(table)]))

    def _compatibility_grants(self, old: str) -> list[sql.Composable]:
        """The renamed table's rights on the view that keeps its old name (the app still using the old
        name is often not the owner: without them it gets "permission denied" at the rename)."""
        info = self.captured.get("renamed", {}).get(old, {})
        view = self.t(old)
        grants: list[sql.Composable] = [
            sql.SQL("GRANT {} ON {} TO {}{}").format(sql.SQL(privilege), view, _role(grantee),
                                                     sql.SQL(" WITH GRANT OPTION" if grantable else ""))
            for grantee, privilege, grantable in info.get("grants", []) if privilege in _VIEW_PRIVILEGES]
        grants += [sql.SQL("GRANT {} ({}) ON {} TO {}{}").format(
            sql.SQL(privilege), sql.Identifier(column), view, _role(grantee),
            sql.SQL(" WITH GRANT OPTION" if grantable else ""))
            for grantee, privilege, column, grantable in info.get("column_grants", [])]
        if info.get("owner") and info.get("owner") != info.get("runner"):
            grants.append(sql.SQL("GRANT ALL ON {} TO {}").format(view, sql.Identifier(info["owner"])))
        return grants

    def _rename_table(self, index: int, o: Op) -> None:
        old, new = str(o.get("from")), str(o.get("to"))
        self.expand_steps.append(Step(f"rename table {old} to {new}, keep {old} as a view", "tx", [
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(self.t(old), sql.Identifier(new)),
            sql.SQL("CREATE VIEW {} {}AS SELECT * FROM {}").format(self.t(old), sql.SQL(
                "WITH (security_invoker = true) " if int(self.captured.get("server_version", 0)) >= 150000 else ""),
                self.t(new)),
            *self._compatibility_grants(old),
        ], [self.label(old)]))
        self.contract_steps.append(Step(f"drop compatibility view {old}", "tx", [
            sql.SQL("DROP VIEW IF EXISTS {}").format(self.t(old))], [self.label(old)]))
        self.abort_steps.append(Step(f"rename table {new} back to {old}", "tx", [
            sql.SQL("DROP VIEW IF EXISTS {}").format(self.t(old)),
            sql.SQL("ALTER TABLE IF EXISTS {} RENAME TO {}").format(self.t(new), sql.Identifier(old)),
        ], [self.label(new)]))
        if old in self.layout:
            self.layout[new] = self.layout[old]

    def _add_column(self, index: int, o: Op) -> None:
        table, column = str(o.get("table")), o.get("column")
        name = str(column["name"])
        default, up = column.get("default"), o.get("up")
        not_null = column.get("nullable") is False
        col = sql.Identifier(name)
        self._touch_layout(table).append((name, name))
        if up is None and (default is None or is_constant(default)):
            # Metadata-only since PostgreSQL 11: a constant default (even NOT NULL) needs no rewrite.
            definition = sql.SQL("{} {}").format(col, sql.SQL(column["type"]))
            if default is not None:
                definition = sql.SQL("{} DEFAULT {}").format(definition, sql.SQL(default))
            if not_null:
                definition = sql.SQL("{} NOT NULL").format(definition)
            self.expand_steps.append(Step(f"add column {table}.{name}", "tx", [
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {}").format(self.t(table), definition)],
                [self.label(table)]))
        else:
            fill = up if up is not None else default
            statements: list[sql.Composable] = [sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                self.t(table), col, sql.SQL(column["type"]))]
            if default is not None:
                statements.append(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                    self.t(table), col, sql.SQL(default)))
            check = self._not_null_check(table, name)
            if not_null:
                statements.append(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID").format(
                    self.t(table), sql.Identifier(check), col))
            create, drop = self._sync(index, table, SyncRule(
                "fill", name, None, fill, None, self._old_namespace(table), {}))
            self.expand_steps.append(Step(f"add column {table}.{name} with fill trigger", "tx",
                                          statements + create, [self.label(table)]))
            self._backfill(index, table, name, f"{quote(name)} IS NULL")
            if not_null:
                self._contract_not_null(table, name, check, drop)
            else:
                self.finish_triggers.setdefault(table, []).extend(drop)
            self.abort_steps.append(Step(f"drop column {table}.{name}", "tx", [*drop, sql.SQL(
                "ALTER TABLE {} DROP COLUMN IF EXISTS {}").format(self.t(table), col)], [self.label(table)]))
            return
        self.abort_steps.append(Step(f"drop column {table}.{name}", "tx", [sql.SQL(
            "ALTER TABLE {} DROP COLUMN IF EXISTS {}").format(self.t(table), col)], [self.label(table)]))

    def _drop_column(self, index: int, o: Op) -> None:
        table, name = str(o.get("table")), str(o.get("column"))
        info = _column(self.captured, o, name)
        layout = self._touch_layout(table)
        layout[:] = [(v, p) for v, p in layout if v != name]
        down = o.get("down")
        if down is None and info["notnull"] and info["default"] is None and not info["special"]:
            raise MigrationSourceError(
                f"{o.where}: {table}.{name} is NOT NULL without a default, so inserts by the new version (which "
                "no longer sees it) would fail; give a 'down' expression for its value.")
        drop: list[sql.Composable] = []
        if down is not None:
            create, drop = self._sync(index, table, SyncRule(
                "down", name, None, None, down, {}, self._new_namespace(table)))
            self.expand_steps.append(Step(f"hide {table}.{name}; trigger fills it for new-version writes", "tx",
                                          create, [self.label(table)]))
            self.abort_steps.append(Step(f"drop trigger for {table}.{name}", "tx", drop, [self.label(table)]))
        self.finish_triggers.setdefault(table, []).extend(drop)
        self.finish.setdefault(table, []).append(sql.SQL("ALTER TABLE {} DROP COLUMN IF EXISTS {}").format(
            self.t(table), sql.Identifier(name)))

    def _duplicate(self, index: int, o: Op, old: str, new_phys: str, new_visible: str, new_type: str,
                   up: str, down: str, default: str | None, final_rename: bool) -> None:
        """The shared shape of rename_column and change_column_type: a shadow column kept in sync."""
        table = str(o.get("table"))
        info = _column(self.captured, o, old)
        if info["special"]:
            raise MigrationSourceError(f"{o.where}: {table}.{old} is an identity or generated column; "
                                       "pgshift cannot duplicate it.")
        for fk in self.captured["tables"][table].get("referenced_by", []):
            if old in fk["columns"]:  # contract could not drop the old column under it
                raise MigrationSourceError(
                    f"{o.where}: {table}.{old} is referenced by foreign key {fk['name']} on {fk['table']}; "
                    "pgshift cannot move a referenced column yet.",
                    hint=f"drop {fk['name']} first, or add a new foreign key to the new column in its own "
                    "migration and drop the old one before contract.")
        for exclusion in self.captured["tables"][table].get("exclusions", []):
            if old in exclusion["columns"]:  # adding one again would block writes while its index builds
                raise MigrationSourceError(
                    f"{o.where}: {table}.{old} is part of exclusion constraint {exclusion['name']}; pgshift cannot "
                    "move it without blocking writes (ADD CONSTRAINT ... EXCLUDE holds an ACCESS EXCLUSIVE lock "
                    "while its index builds).",
                    hint=f"drop {exclusion['name']} in an earlier migration and add it again after contract, in a "
                    "quiet window.")
        old_ns = self._old_namespace(table)
        layout = self._touch_layout(table)
        layout[:] = [(new_visible, new_phys) if v == old else (v, p) for v, p in layout]
        new_ns = self._new_namespace(table)
        col = sql.Identifier(new_phys)
        statements: list[sql.Composable] = [sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
            self.t(table), col, sql.SQL(new_type))]
        if default is not None:
            statements.append(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                self.t(table), col, sql.SQL(default)))
        statements += self._column_settings(table, col, info, same_type=not final_rename)  # rename: same type
        # Through a security_invoker view the querying role needs its column privileges on the new column too.
        for grantee, privilege, column, grantable in self.captured["tables"][table].get("column_grants", []):
            if column == old:
                statements.append(sql.SQL("GRANT {} ({}) ON {} TO {}{}").format(
                    sql.SQL(privilege), col, self.t(table), _role(grantee),
                    sql.SQL(" WITH GRANT OPTION" if grantable else "")))
        check = self._not_null_check(table, new_phys)
        if info["notnull"]:
            statements.append(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID").format(
                self.t(table), sql.Identifier(check), col))
        create, drop = self._sync(index, table, SyncRule("pair", new_phys, old, up, down, old_ns, new_ns))
        self.expand_steps.append(Step(f"add {table}.{new_phys} kept in sync with {old}", "tx", statements + create,
                                      [self.label(table)]))
        self._backfill(index, table, old, f"{quote(new_phys)} IS NULL")
        self.finish_triggers.setdefault(table, []).extend(drop)
        finish: list[sql.Composable] = [sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(
            self.t(table), sql.Identifier(old))]
        if final_rename:
            finish.append(sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(
                self.t(table), col, sql.Identifier(new_visible)))
        if info["notnull"]:
            self.validations.append(Step(f"validate NOT NULL check on {table}.{new_phys}", "tx", [
                sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(self.t(table), sql.Identifier(check))],
                weak_lock_tables=[self.label(table)]))
            finish += [sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(self.t(table), col),
                       sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(self.t(table), sql.Identifier(check))]
            # SET NOT NULL must come before the rename, which changes the column's name.
            if final_rename:
                finish.append(finish.pop(-3))
        self.moved.setdefault(table, {})[old] = new_phys
        self.finish.setdefault(table, []).extend(finish)
        self.abort_steps.append(Step(f"drop {table}.{new_phys} and its trigger", "tx", [*drop, sql.SQL(
            "ALTER TABLE {} DROP COLUMN IF EXISTS {}").format(self.t(table), col)], [self.label(table)]))

    def _column_settings(self, table: str, col: sql.Identifier, info: dict[str, Any], *,
                         same_type: bool) -> list[sql.Composable]:
        """The old column's comment and statistics target (a planner setting: losing it can change
        plans), and for the same type its storage and compression, given to the new column."""
        alter = sql.SQL("ALTER TABLE {} ALTER COLUMN {} ").format(self.t(table), col)
        out: list[sql.Composable] = []
        if info.get("comment") is not None:
            out.append(sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(self.t(table), col,
                                                                      sql.Literal(info["comment"])))
        if info.get("statistics") is not None:
            out.append(alter + sql.SQL("SET STATISTICS {}").format(sql.Literal(int(info["statistics"]))))
        if same_type and info.get("storage"):
            storage = {"p": "PLAIN", "e": "EXTERNAL", "m": "MAIN", "x": "EXTENDED"}[info["storage"]]
            out.append(alter + sql.SQL("SET STORAGE {}").format(sql.SQL(storage)))
        if same_type and info.get("compression"):
            out.append(alter + sql.SQL("SET COMPRESSION {}").format(sql.SQL(info["compression"])))
        return out

    def _carry_indexes(self, table: str, moved: dict[str, str]) -> tuple[list[Step], list[sql.Composable]]:
        """Every index on a replaced column is built again on the new column(s), after the backfill
        so on filled data. Contract drops the old columns with their indexes and gives the copies
        the old names: returns the build steps and those renames."""
        steps: list[Step] = []
        renames: list[sql.Composable] = []
        for idx in self.captured["tables"][table].get("indexes", []):
            if not set(idx["columns"]) & set(moved):
                continue
            copy = _name(idx["name"], self.version)
            steps.append(Step(f"build index {copy} concurrently (copy of {idx['name']} on the new columns)",
                              "autocommit", [sql.SQL(carried_index(idx["definition"], moved, copy))],
                              weak_lock_tables=[self.label(table)], index=copy))
            renames.append(self._index_home(table, idx, copy))
        return steps, renames

    def _index_home(self, table: str, idx: dict[str, Any], copy: str) -> sql.Composable:
        """At contract the copy takes the old index's place: its name, or the PRIMARY KEY / UNIQUE
        constraint it backed (ADD CONSTRAINT ... USING INDEX renames the index to the constraint)."""
        con = idx.get("constraint")
        if not con:
            return sql.SQL("ALTER INDEX {} RENAME TO {}").format(sql.Identifier(self.schema, copy),
                                                               sql.Identifier(idx["name"]))
        timing = " DEFERRABLE" + (" INITIALLY DEFERRED" if con["deferred"] else "") if con["deferrable"] else ""
        return sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}{}").format(
            self.t(table), sql.Identifier(con["name"]), sql.SQL("PRIMARY KEY" if con["type"] == "p" else "UNIQUE"),
            sql.Identifier(copy), sql.SQL(timing))

    def _carry_constraints(self, table: str, moved: dict[str, str]) -> tuple[list[Step], list[sql.Composable]]:
        """The table's foreign keys and CHECK constraints on a replaced column, added again on the new
        columns NOT VALID (new rows are checked at once), validated at contract with a weak lock
        (unless the original was NOT VALID itself: old rows may break it) and given the original's
        name once DROP COLUMN has taken the original away."""
        steps: list[Step] = []
        renames: list[sql.Composable] = []
        captured = self.captured["tables"][table]
        for what, key, carried in (("foreign key", "foreign_keys", carried_foreign_key),
                                   ("check", "checks", carried_check)):
            for con in captured.get(key, []):
                if not set(con["columns"]) & set(moved):
                    continue
                copy = _name(con["name"], self.version)
                clause = carried(con["definition"], moved, copy)
                steps.append(Step(f"add {what} {copy} on the new columns (NOT VALID, copy of {con['name']})", "tx",
                                  [sql.SQL("ALTER TABLE {} ADD {}").format(self.t(table), sql.SQL(clause))],
                                  [self.label(table)]))
                if con.get("validated", True):
                    self.validations.append(Step(f"validate {what} {copy}", "tx", [sql.SQL(
                        "ALTER TABLE {} VALIDATE CONSTRAINT {}").format(self.t(table), sql.Identifier(copy))],
                        weak_lock_tables=[self.label(table)]))
                renames.append(sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                    self.t(table), sql.Identifier(copy), sql.Identifier(con["name"])))
        return steps, renames

    def _rename_column(self, index: int, o: Op) -> None:
        old, new = str(o.get("from")), str(o.get("to"))
        info = _column(self.captured, o, old)
        typed = f"{info['type']} {info['collate']}" if info.get("collate") else info["type"]  # same sort order
        self._duplicate(index, o, old, new, new, typed, quote(old), quote(new), info["default"], False)

    def _change_column_type(self, index: int, o: Op) -> None:
        name, new_type = str(o.get("column")), str(o.get("type"))
        info = _column(self.captured, o, name)
        up = o.get("up") or f"CAST({quote(name)} AS {new_type})"
        down = o.get("down") or f"CAST({quote(name)} AS {info['type']})"
        shadow = _name("_pgshift", self.version, name)
        default = o.get("default") or info["default"]
        self._duplicate(index, o, name, shadow, name, new_type, up, down, default, True)

    def _set_not_null(self, index: int, o: Op) -> None:
        table, name = str(o.get("table")), str(o.get("column"))
        _column(self.captured, o, name)
        col, check = sql.Identifier(name), self._not_null_check(table, name)
        statements: list[sql.Composable] = [
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(self.t(table), sql.Identifier(check)),
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID").format(
                self.t(table), sql.Identifier(check), col)]
        drop: list[sql.Composable] = []
        if o.get("up"):
            create, drop = self._sync(index, table, SyncRule("fill", name, None, str(o.get("up")), None,
                                                             self._old_namespace(table), {}, only_null=True))
            statements += create
            self._backfill(index, table, name, f"{quote(name)} IS NULL")
        self.expand_steps.append(Step(f"add NOT NULL check on {table}.{name} (NOT VALID)", "tx", statements,
                                      [self.label(table)]))
        self._contract_not_null(table, name, check, drop)
        self.abort_steps.append(Step(f"drop NOT NULL check on {table}.{name}", "tx", [*drop, sql.SQL(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(self.t(table), sql.Identifier(check))],
            [self.label(table)]))

    def _drop_not_null(self, index: int, o: Op) -> None:
        table, name = str(o.get("table")), str(o.get("column"))
        info = _column(self.captured, o, name)
        self.expand_steps.append(Step(f"drop NOT NULL on {table}.{name}", "tx", [
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(self.t(table), sql.Identifier(name))],
            [self.label(table)]))
        if info["notnull"]:
            check = self._not_null_check(table, name)
            self.abort_steps.append(Step(f"restore NOT NULL on {table}.{name}", "tx", [
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(self.t(table), sql.Identifier(check)),
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID").format(
                    self.t(table), sql.Identifier(check), sql.Identifier(name)),
                sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(self.t(table), sql.Identifier(check)),
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(self.t(table), sql.Identifier(name)),
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(self.t(table), sql.Identifier(check)),
            ], [self.label(table)]))

    def _set_default(self, index: int, o: Op) -> None:
        table, name = str(o.get("table")), str(o.get("column"))
        info = _column(self.captured, o, name)

        def to(default: str | None) -> sql.Composable:
            if default is None:
                return sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT").format(
                    self.t(table), sql.Identifier(name))
            return sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                self.t(table), sql.Identifier(name), sql.SQL(default))

        self.expand_steps.append(Step(f"set default of {table}.{name}", "tx", [to(o.get("default"))],
                                      [self.label(table)]))
        self.abort_steps.append(Step(f"restore default of {table}.{name}", "tx", [to(info["default"])],
                                     [self.label(table)]))

    def _add_check(self, index: int, o: Op) -> None:
        table, name = str(o.get("table")), str(o.get("name"))
        self.expand_steps.append(Step(f"add check {name} (NOT VALID)", "tx", [
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({}) NOT VALID").format(
                self.t(table), sql.Identifier(name), sql.SQL(str(o.get("check"))))], [self.label(table)]))
        self._validate_and_abort(table, name)

    def _validate_and_abort(self, table: str, name: str) -> None:
        self.validations.append(Step(f"validate {name}", "tx", [
            sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(self.t(table), sql.Identifier(name))],
            weak_lock_tables=[self.label(table)]))
        self.abort_steps.append(Step(f"drop constraint {name}", "tx", [
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(self.t(table), sql.Identifier(name))],
            [self.label(table)]))

    def _add_foreign_key(self, index: int, o: Op) -> None:
        table, name = str(o.get("table")), str(o.get("name"))
        ref = str(o.get("references_table"))
        statement = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})").format(
            self.t(table), sql.Identifier(name), sql.SQL(", ").join(sql.Identifier(c) for c in o.get("columns")),
            self.t(ref), sql.SQL(", ").join(sql.Identifier(c) for c in o.get("references_columns")))
        if o.get("on_delete"):
            statement = sql.SQL("{} ON DELETE {}").format(statement, sql.SQL(str(o.get("on_delete")).upper()))
        self.expand_steps.append(Step(f"add foreign key {name} (NOT VALID)", "tx", [
            sql.SQL("{} NOT VALID").format(statement)], [self.label(table), self.label(ref)]))
        self._validate_and_abort(table, name)

    def _index(self, table: str, name: str, columns: list[str], unique: bool, method: str | None,
               where: str | None) -> sql.Composable:
        statement = sql.SQL("CREATE {}INDEX CONCURRENTLY IF NOT EXISTS {} ON {} {}({})").format(
            sql.SQL("UNIQUE " if unique else ""), sql.Identifier(name), self.t(table),
            sql.SQL("USING {} ").format(sql.Identifier(method)) if method else sql.SQL(""),
            sql.SQL(", ").join(sql.Identifier(c) for c in columns))
        if where:
            statement = sql.SQL("{} WHERE {}").format(statement, sql.SQL(where))
        return statement

    def _drop_index_step(self, name: str, label: str) -> Step:
        return Step(label, "autocommit", [
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(self.schema, name))])

    def _add_unique(self, index: int, o: Op) -> None:
        table, name = str(o.get("table")), str(o.get("name"))
        self.expand_steps.append(Step(f"build unique index {name} concurrently", "autocommit", [
            self._index(table, name, list(o.get("columns")), True, None, None)], weak_lock_tables=[self.label(table)],
            index=name))
        self.contract_steps.append(Step(f"add unique constraint {name} using its index", "tx", [
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} UNIQUE USING INDEX {}").format(
                self.t(table), sql.Identifier(name), sql.Identifier(name))], [self.label(table)]))
        self.abort_steps.append(self._drop_index_step(name, f"drop index {name}"))

    def _create_index(self, index: int, o: Op) -> None:
        table, name = str(o.get("table")), str(o.get("name"))
        self.expand_steps.append(Step(f"build index {name} concurrently", "autocommit", [
            self._index(table, name, list(o.get("columns")), bool(o.get("unique")), o.get("method"), o.get("where"))],
            weak_lock_tables=[self.label(table)], index=name))
        self.abort_steps.append(self._drop_index_step(name, f"drop index {name}"))

    def _drop_index(self, index: int, o: Op) -> None:
        name = str(o.get("name"))
        self.contract_steps.append(self._drop_index_step(name, f"drop index {name}"))

    def _add_enum_value(self, index: int, o: Op) -> None:
        statement = sql.SQL("ALTER TYPE {} ADD VALUE IF NOT EXISTS {}").format(
            sql.Identifier(self.schema, str(o.get("type"))), sql.Literal(str(o.get("value"))))
        for key in ("before", "after"):
            if o.get(key):
                statement = sql.SQL("{} {} {}").format(statement, sql.SQL(key.upper()), sql.Literal(str(o.get(key))))
        self.expand_steps.append(Step(f"add enum value {o.get('value')!r}", "autocommit", [statement]))
        warning = (f"PostgreSQL cannot remove an enum value: {o.get('type')}.{o.get('value')} stays after abort "
                   "(unused values are harmless).")
        self.abort_steps.append(Step(f"keep enum value {o.get('value')!r}", "tx", [], warning=warning))

    def _sql(self, index: int, o: Op) -> None:
        def statements(text: str, part: str) -> list[sql.Composable]:
            return [sql.SQL(s.sql) for s in split_sql(text, file=f"{o.where}.{part}")]

        self.expand_steps.append(Step(f"sql #{index} up", "tx", statements(str(o.get("up")), "up")))
        if o.get("contract"):
            self.contract_steps.append(Step(f"sql #{index} contract", "tx",
                                            statements(str(o.get("contract")), "contract")))
        if o.get("down"):
            self.abort_steps.append(Step(f"sql #{index} down", "tx", statements(str(o.get("down")), "down")))
        else:
            self.abort_steps.append(Step(f"sql #{index} has no down", "tx", [],
                                         warning=f"{o.where}: no 'down' part; abort cannot undo it."))


def plan_phases(ops: OpsFile, version: str, captured: dict[str, Any]) -> Phases:
    return Planner(ops, version, captured).plan()


# -- small SQL helpers -----------------------------------------------------------------------
def quote(name: str) -> str:
    """A double-quoted identifier for use inside expressions we generate as text."""
    return '"' + name.replace('"', '""') + '"'


def sql_set_self(column: str) -> str:
    """The backfill's no-op SET: it fires the sync trigger, which computes the new value."""
    return f"{quote(column)} = {quote(column)}"


