"""Turn operations into the steps of each phase: expand, contract and abort.

Every step is either one short transaction (its progress recorded in the same transaction), one
statement that must run outside a transaction (CREATE INDEX CONCURRENTLY; written so a rerun is
harmless), or a resumable backfill. Steps depend only on the operations and on the catalog facts
captured before expand started, so a rerun after a crash rebuilds the same list and continues.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from pglast import ast, parse_sql
from pglast.stream import RawStream
from pglast.visitors import Visitor
from psycopg import sql

from pgshift.errors import MigrationRefused, MigrationSourceError
from pgshift.migrations.model import OpsMigration, OpsPhase, SqlMigration, Statement
from pgshift.ops.facts import (
    CatalogFacts,
    CheckFacts,
    ColumnFacts,
    ColumnGrant,
    ExclusionFacts,
    ForeignKeyFacts,
    Grant,
    IndexConstraint,
    IndexFacts,
    IndexTargetFacts,
    PartitionFacts,
    ReferenceFacts,
    Rights,
    TableFacts,
)
from pgshift.ops.model import OpsFile
from pgshift.ops.names import clip, fit, qualified
from pgshift.ops.operations._base import (
    VIEW_PRIVILEGES,
    Operation,
    StepKind,
    partitioned_index_steps,
    partitions,
    quote,
    role,
)
from pgshift.ops.operations.drop_index import DropIndex
from pgshift.ops.operations.rename_table import RenameTable
from pgshift.ops.sync import SyncRule, create_sync, drop_sync, sync_names
from pgshift.runner.backfill import BackfillSpec
from pgshift.runner.steps import Step, sql_steps


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
def capture(conn: psycopg.Connection[Any], ops: OpsFile) -> CatalogFacts:
    tables: dict[str, TableFacts] = {}
    for o in ops.operations:
        table = o.target
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
                fks, referenced_by = _foreign_keys(conn, ops.schema, table)
                checks, exclusions = _checks_and_exclusions(conn, ops.schema, table)
                tables[table] = TableFacts(
                    tuple(ColumnFacts(*r) for r in rows), _rights(conn, ops.schema, table),
                    _table_indexes(conn, ops.schema, table), fks, referenced_by, checks, exclusions,
                    *_partitions(conn, ops.schema, table))
    # A renamed table keeps its old name as a view: the app roles need the same rights on it.
    renamed = {o.from_: _rights(conn, ops.schema, o.from_) for o in ops.operations if isinstance(o, RenameTable)}
    indexes = {o.name: found for o in ops.operations if isinstance(o, DropIndex)
               if (found := _index_target(conn, ops.schema, o.name)) is not None}
    return CatalogFacts(tables, tuple(_schema_usage(conn, ops.schema)), conn.info.server_version, renamed, indexes)


def _index_target(conn: psycopg.Connection[Any], schema: str, name: str) -> IndexTargetFacts | None:
    """The table of an index drop_index names, and whether PostgreSQL lets it be dropped CONCURRENTLY: not a
    partitioned table's index, nor a partition's index attached to one (only the top one can be dropped)."""
    row = conn.execute(
        """
        SELECT tn.nspname::text, t.relname::text, c.relkind = 'I',
               (SELECT array[rn.nspname::text, r.relname::text] FROM pg_class r
                JOIN pg_namespace rn ON rn.oid = r.relnamespace
                WHERE c.relispartition AND r.oid = pg_partition_root(c.oid)),
               array(SELECT array[pn.nspname::text, p.relname::text]
                     FROM pg_partition_tree(c.oid) x JOIN pg_index pi ON pi.indexrelid = x.relid
                     JOIN pg_class p ON p.oid = pi.indrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
                     WHERE c.relkind = 'I' ORDER BY x.level, 1)
        FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
        JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
        WHERE c.oid = to_regclass(format('%%I.%%I', %s::text, %s::text))
        """, (schema, name)).fetchone()
    if row is None:
        return None
    owner = qualified(*row[3]) if row[3] else None
    return IndexTargetFacts(qualified(row[0], row[1]), bool(row[2]), owner, tuple(qualified(*t) for t in row[4]))


def _partitions(conn: psycopg.Connection[Any], schema: str, table: str
                ) -> tuple[bool, tuple[PartitionFacts, ...], str | None, tuple[str, ...]]:
    """Whether the table is partitioned, its partitions at every depth (parents first) and its own
    DEFAULT partition: operations that PostgreSQL cannot run on a partitioned table without a long
    lock (CREATE INDEX CONCURRENTLY, a NOT VALID foreign key before 18) run partition by partition."""
    row = conn.execute(
        """
        SELECT c.relkind = 'p', (SELECT d.relname::text FROM pg_partitioned_table p JOIN pg_class d
                                 ON d.oid = p.partdefid WHERE p.partrelid = c.oid),
               array(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                     AND (a.attnum = ANY (SELECT unnest(p.partattrs::int2[]) FROM pg_partitioned_table p
                                          WHERE p.partrelid = c.oid)
                          -- a column in a key expression: an internal dependency of the table on it
                          OR a.attnum IN (SELECT d.objsubid FROM pg_depend d
                                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                            AND d.refobjid = c.oid AND d.refobjsubid = 0 AND d.deptype = 'i'))
                     ORDER BY a.attnum)
        FROM pg_class c WHERE c.oid = to_regclass(format('%%I.%%I', %s::text, %s::text))
        """, (schema, table)).fetchone()
    if row is None or not row[0]:
        return False, (), None, ()
    # A partition an interrupted DETACH ... CONCURRENTLY left pending is no longer in the tree, but is the
    # table's until the detach is finished (pg_inherits.inhdetachpending is 14+: read through to_jsonb).
    rows = conn.execute(
        """
        WITH tree AS (
            SELECT t.relid, t.parentrelid, t.isleaf, t.level
            FROM pg_partition_tree(to_regclass(format('%%I.%%I', %s::text, %s::text))) t WHERE t.level > 0
            UNION ALL
            SELECT i.inhrelid, i.inhparent, c.relkind <> 'p', 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = to_regclass(format('%%I.%%I', %s::text, %s::text))
              AND (to_jsonb(i) ->> 'inhdetachpending')::boolean)
        SELECT n.nspname::text, c.relname::text, pn.nspname::text, pc.relname::text, t.isleaf,
               pg_get_expr(c.relpartbound, c.oid)
        FROM tree t
        JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_class pc ON pc.oid = t.parentrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
        ORDER BY t.level, 1, 2
        """, (schema, table, schema, table)).fetchall()
    return True, tuple(PartitionFacts(*r) for r in rows), row[1], tuple(row[2])


def _rights(conn: psycopg.Connection[Any], schema: str, table: str) -> Rights:
    return Rights(_table_grants(conn, schema, table), _column_grants(conn, schema, table),
                  **_security(conn, schema, table))


# Who may use the tables: the version schema's views get the same rights, or an app role that is
# not the owner would get "permission denied" the moment its new version switches over.
_GRANTEE = "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END"


def _table_grants(conn: psycopg.Connection[Any], schema: str, table: str) -> tuple[Grant, ...]:
    rows = conn.execute(
        f"""
        SELECT {_GRANTEE}, a.privilege_type, a.is_grantable
        FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
        WHERE c.oid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND a.grantee <> c.relowner
        ORDER BY 1, 2
        """, (schema, table)).fetchall()
    return tuple(Grant(str(r[0]), str(r[1]), bool(r[2])) for r in rows)


def _column_grants(conn: psycopg.Connection[Any], schema: str, table: str) -> tuple[ColumnGrant, ...]:
    """Column-level privileges (GRANT SELECT (col) ...)."""
    rows = conn.execute(
        f"""
        SELECT {_GRANTEE}, a.privilege_type, t.attname::text, a.is_grantable
        FROM pg_attribute t, aclexplode(t.attacl) a
        WHERE t.attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND t.attnum > 0
          AND NOT t.attisdropped AND t.attacl IS NOT NULL
        ORDER BY 1, 2, 3
        """, (schema, table)).fetchall()
    return tuple(ColumnGrant(str(r[0]), str(r[1]), str(r[2]), bool(r[3])) for r in rows)


def _security(conn: psycopg.Connection[Any], schema: str, table: str) -> dict[str, Any]:
    """Row-level security and the owner: the version schema's views must enforce what the table does."""
    row = conn.execute(
        "SELECT c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner), current_user::text "
        "FROM pg_class c WHERE c.oid = to_regclass(format('%%I.%%I', %s::text, %s::text))", (schema, table)).fetchone()
    if row is None:
        return {}
    return {"rls": bool(row[0]), "force_rls": bool(row[1]), "owner": str(row[2]), "runner": str(row[3])}


def _table_indexes(conn: psycopg.Connection[Any], schema: str, table: str) -> tuple[IndexFacts, ...]:
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
    return tuple(IndexFacts(r[0], r[1], tuple(r[2]), IndexConstraint(r[3], r[4], r[5], r[6]) if r[3] else None)
                 for r in rows)


def _foreign_keys(conn: psycopg.Connection[Any], schema: str, table: str
                  ) -> tuple[tuple[ForeignKeyFacts, ...], tuple[ReferenceFacts, ...]]:
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
    return (tuple(ForeignKeyFacts(r[0], r[2], tuple(r[5]), r[7]) for r in rows if r[3]),
            tuple(ReferenceFacts(r[0], r[1], tuple(r[6])) for r in rows if r[4]))


def _checks_and_exclusions(conn: psycopg.Connection[Any], schema: str, table: str
                           ) -> tuple[tuple[CheckFacts, ...], tuple[ExclusionFacts, ...]]:
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
    return (tuple(CheckFacts(r[0], r[2], tuple(r[4]), r[3]) for r in rows if r[1] == "c"),
            tuple(ExclusionFacts(r[0], tuple(r[4])) for r in rows if r[1] == "x"))


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


def carried_foreign_key(definition: str, moved: dict[str, str], name: str, *, valid: bool = False) -> str:
    """A foreign key (pg_get_constraintdef) on the new columns (``moved``: old -> new), named
    ``name`` and NOT VALID (unless ``valid``): the constraint clause for ``ALTER TABLE ... ADD``."""
    con = _constraint_clause(definition)
    con.fk_attrs = tuple(ast.String(sval=moved.get(a.sval, a.sval)) for a in con.fk_attrs or ())
    con.conname, con.skip_validation, con.initially_valid = name, not valid, valid
    return str(RawStream()(con))


def carried_index(definition: str, moved: dict[str, str], name: str, *,
                  on: tuple[str, str] | None = None, how: str = "CONCURRENTLY") -> str:
    """``definition`` (pg_get_indexdef) rebuilt on the new columns (``moved``: old -> new name),
    named ``name``, built CONCURRENTLY IF NOT EXISTS; rewritten on libpg_query's tree, not as text.
    ``on``: (schema, table) of a partition to build it on instead; ``how`` "ONLY": the partitioned
    table's own index, built empty (see pgshift.ops.operations._base.partitioned_index_steps)."""
    stmt = parse_sql(definition)[0].stmt
    assert isinstance(stmt, ast.IndexStmt), definition
    _OnNewColumns(moved)(stmt)
    stmt.idxname, stmt.concurrent, stmt.if_not_exists = name, how == "CONCURRENTLY", True
    assert stmt.relation is not None
    if on is not None:
        stmt.relation.schemaname, stmt.relation.relname = on
    stmt.relation.inh = how != "ONLY"
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


# -- the planner -----------------------------------------------------------------------------
class Planner:
    """The planning context (:class:`pgshift.ops.operations._base.Plan`): each operation adds its steps
    here; ``plan()`` orders them into the phases, with the version schema's views and what moved columns
    carry along (indexes, constraints)."""

    def __init__(self, ops: OpsFile, version: str, facts: CatalogFacts) -> None:
        self.ops = ops
        self.version = version
        self.facts = facts
        self.schema = ops.schema
        self.vschema = version_schema_name(ops, version)
        # New-version column layout per table: [(visible name, physical name)], for the views.
        self.layout: dict[str, list[tuple[str, str]]] = {
            t: [(c.name, c.name) for c in info.columns] for t, info in facts.tables.items()}
        self.view_tables: list[str] = []
        self.expand_steps: list[Step] = []
        self.backfills: list[Step] = []
        self.contract_steps: list[Step] = []
        # Contract: validations first (weak locks), then per table one transaction that drops every sync
        # trigger before any old column (a trigger may read any column), then the rest.
        self.validations: list[Step] = []
        self.finish_triggers: dict[str, list[sql.Composable]] = {}
        self.finishing: dict[str, list[sql.Composable]] = {}
        self.abort_steps: list[Step] = []
        self.moved: dict[str, dict[str, str]] = {}  # table -> {old column: new physical column}
        self.warnings: list[str] = []

    def t(self, table: str) -> sql.Identifier:
        return sql.Identifier(self.schema, table)

    def label(self, table: str) -> str:
        """Quoted where needed: lock_tables labels are looked up with to_regclass."""
        return qualified(self.schema, table)

    # -- what operations add ---------------------------------------------------------------
    def expand(self, label: str, kind: StepKind, statements: Sequence[sql.Composable] = (),
               lock_tables: Sequence[str] = (), *, weak_lock_tables: Sequence[str] = (), index: str | None = None,
               index_schema: str | None = None, warning: str | None = None,
               skip_if: sql.Composable | None = None) -> None:
        self.expand_steps.append(Step(label, kind, list(statements), list(lock_tables), list(weak_lock_tables),
                                      warning=warning, index=index, index_schema=index_schema, skip_if=skip_if))

    def contract(self, label: str, kind: StepKind, statements: Sequence[sql.Composable] = (),
                 lock_tables: Sequence[str] = (), *, warning: str | None = None) -> None:
        self.contract_steps.append(Step(label, kind, list(statements), list(lock_tables), warning=warning))

    def abort(self, label: str, kind: StepKind, statements: Sequence[sql.Composable] = (),
              lock_tables: Sequence[str] = (), *, weak_lock_tables: Sequence[str] = (),
              warning: str | None = None) -> None:
        self.abort_steps.append(Step(label, kind, list(statements), list(lock_tables), list(weak_lock_tables),
                                     warning=warning))

    def validate(self, label: str, table: str | PartitionFacts, constraint: str) -> None:
        ident, shown = ((self.t(table), self.label(table)) if isinstance(table, str) else
                        (sql.Identifier(table.schema, table.name), qualified(table.schema, table.name)))
        self.validations.append(Step(label, "tx", [sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
            ident, sql.Identifier(constraint))], weak_lock_tables=[shown]))

    def finish(self, table: str, statements: Sequence[sql.Composable], *, triggers: bool = False) -> None:
        (self.finish_triggers if triggers else self.finishing).setdefault(table, []).extend(statements)

    def backfill(self, index: int, table: str, touch: str, where: str) -> None:
        spec = BackfillSpec(table, sql_set_self(touch), where, job=f"{self.version}:{index}:{table}",
                            version=self.version, schema=self.schema)
        self.backfills.append(Step(f"backfill {self.label(table)}", "backfill", backfill=spec))

    def sync(self, index: int, table: str, rule: SyncRule) -> list[sql.Composable]:
        func, trigger = sync_names(self.version, index, table)
        return create_sync(self.t(table), sql.Identifier(self.schema, func), sql.Identifier(trigger), rule,
                           self.vschema)

    def drop_sync(self, index: int, table: str) -> list[sql.Composable]:
        func, trigger = sync_names(self.version, index, table)
        statements = drop_sync(self.t(table), sql.Identifier(self.schema, func), sql.Identifier(trigger))
        facts = self.facts.tables.get(table)
        if facts is not None and facts.partitioned:
            # DROP TRIGGER on a partitioned table locks the partitions' clones before upgrading its lock on
            # the parent, the reverse of a query's order (parent, then the partition it reads): the two
            # deadlocked. LOCK TABLE takes the parent first, then its partitions.
            statements.insert(0, sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(self.t(table)))
        return statements

    def column(self, op: Operation, name: str) -> ColumnFacts:
        table = self.facts.tables.get(op.target or "")
        if table is None:
            raise MigrationSourceError(f"{op.origin}: table {op.target!r} does not exist.")
        found = table.column(name)
        if found is None:
            raise MigrationSourceError(f"{op.origin}: column {name!r} does not exist in table {op.target!r}.")
        return found

    def touch_layout(self, table: str) -> list[tuple[str, str]]:
        if table not in self.layout:
            raise MigrationSourceError(f"table {table!r} does not exist in schema {self.schema}.")
        if table not in self.view_tables:
            self.view_tables.append(table)
        return self.layout[table]

    def old_namespace(self, table: str) -> dict[str, str]:
        return {c.name: c.name for c in self.facts.tables[table].columns}

    def new_namespace(self, table: str) -> dict[str, str]:
        return dict(self.layout.get(table, []))

    def not_null_check(self, table: str, column: str) -> str:
        return _name("_pgshift_nn", table, column)

    def contract_not_null(self, table: str, column: str, check: str, drop: list[sql.Composable]) -> None:
        """VALIDATE (weak lock, scans) then SET NOT NULL (instant thanks to the valid CHECK, PG12+)."""
        self.validate(f"validate NOT NULL check on {table}.{column}", table, check)
        self.finish(table, drop, triggers=True)
        self.finish(table, [
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(self.t(table), sql.Identifier(column)),
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(self.t(table), sql.Identifier(check))])

    # -- the phases ------------------------------------------------------------------------
    def plan(self) -> Phases:
        for index, o in enumerate(self.ops.operations):
            o.expand(self, index)
            o.contract(self, index)
            o.abort(self, index)
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
        for table in dict.fromkeys([*self.finish_triggers, *self.finishing]):
            contract.append(Step(f"finish {self.label(table)}: drop sync triggers and old columns", "tx",
                                 [*self.finish_triggers.get(table, []), *self.finishing.get(table, []),
                                  *renames.get(table, [])], [self.label(table)]))
        contract += self.contract_steps
        contract.append(Step(f"drop version schema {self.vschema}", "tx", [
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.vschema))]))
        abort = self.abort_steps[-1:] if self.view_tables else []
        abort += list(reversed(self.abort_steps[:-1] if self.view_tables else self.abort_steps))
        return Phases(expand, contract, abort, self.vschema, self.warnings, len(self.validations))

    def _views_step(self) -> Step:
        statements: list[sql.Composable] = [
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.vschema))]
        warnings: list[str] = []
        for table in self.view_tables:
            info = self.facts.tables.get(table)
            rights = info.rights if info is not None else Rights()
            columns = sql.SQL(", ").join(sql.SQL("{} AS {}").format(sql.Identifier(phys), sql.Identifier(vis))
                                         for vis, phys in self.layout[table])
            statements.append(sql.SQL("CREATE OR REPLACE VIEW {} {}AS SELECT {} FROM {}").format(
                sql.Identifier(self.vschema, table), self._invoker(table), columns, self.t(table)))
            for g in rights.grants:
                if g.privilege not in VIEW_PRIVILEGES:
                    continue
                statements.append(sql.SQL("GRANT {} ON {} TO {}{}").format(
                    sql.SQL(g.privilege), sql.Identifier(self.vschema, table), role(g.grantee),
                    sql.SQL(" WITH GRANT OPTION" if g.grantable else "")))
            # Column privileges follow the column to its name in the new version.
            origin = {new: old for old, new in self.moved.get(table, {}).items()}
            for vis, phys in self.layout[table]:
                for cg in rights.column_grants:
                    if cg.column == origin.get(phys, phys):
                        statements.append(sql.SQL("GRANT {} ({}) ON {} TO {}{}").format(
                            sql.SQL(cg.privilege), sql.Identifier(vis), sql.Identifier(self.vschema, table),
                            role(cg.grantee), sql.SQL(" WITH GRANT OPTION" if cg.grantable else "")))
            warnings += self._column_only_readers(table, rights)
            if rights.owner and rights.owner != rights.runner:  # the owner keeps its table's rights
                statements.append(sql.SQL("GRANT ALL ON {} TO {}").format(
                    sql.Identifier(self.vschema, table), sql.Identifier(rights.owner)))
        for grantee in self.facts.schema_usage:
            statements.append(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier(self.vschema), role(grantee)))
        return Step(f"create version schema {self.vschema}", "tx", statements, warning=" ".join(warnings) or None)

    def _column_only_readers(self, table: str, rights: Rights) -> list[str]:
        """Roles that may read only some columns of the table. PostgreSQL checks a security_invoker view's
        every column against the querying role, so such a role is refused the whole view: say so."""
        if self.facts.server_version < 150000:
            return []
        readers = {g.grantee for g in rights.grants if g.privilege == "SELECT"}
        partial: dict[str, list[str]] = {}
        for cg in rights.column_grants:
            if cg.privilege == "SELECT" and cg.grantee not in readers:
                partial.setdefault(cg.grantee, []).append(cg.column)
        return [f"role {role} may read only columns {', '.join(columns)} of {self.label(table)}: the view "
                f"{self.vschema}.{table} refuses it (PostgreSQL checks every column a security_invoker view "
                "names), so that role reads the table directly until contract." for role, columns in partial.items()]

    def _invoker(self, table: str) -> sql.Composable:
        """A view runs with its owner's rights unless security_invoker (PostgreSQL 15+): then row-level
        security, FORCE ROW LEVEL SECURITY, column privileges and a revoked grant apply to whoever queries
        it, exactly as on the table. Before 15 a view over a table with row-level security would show
        every row to every role, so that is refused."""
        if self.facts.server_version >= 150000:
            return sql.SQL("WITH (security_invoker = true) ")
        info = self.facts.tables.get(table)
        if info is not None and info.rights.rls:
            raise MigrationRefused(
                f"Table {self.label(table)} has row-level security, and this server (PostgreSQL "
                f"{self.facts.server_version // 10000}) cannot make the version schema's view "
                f"{self.vschema}.{table} enforce it: a view before PostgreSQL 15 runs with its owner's rights, so "
                "every role would see every row through it. Nothing was changed.",
                hint="upgrade to PostgreSQL 15 or later (views with security_invoker), or make this change with a "
                "plain SQL migration.")
        return sql.SQL("")

    def _carry_indexes(self, table: str, moved: dict[str, str]) -> tuple[list[Step], list[sql.Composable]]:
        """Every index on a replaced column is built again on the new column(s), after the backfill
        so on filled data. Contract drops the old columns with their indexes and gives the copies
        the old names: returns the build steps and those renames."""
        steps: list[Step] = []
        renames: list[sql.Composable] = []
        for idx in self.facts.tables[table].indexes:
            if not set(idx.columns) & set(moved):
                continue
            copy = _name(idx.name, self.version)
            if partitions(self, table):
                steps += self._carry_partitioned_index(table, idx, moved, copy)
                renames.append(self._index_home(table, idx, copy))
                continue
            steps.append(Step(f"build index {copy} concurrently (copy of {idx.name} on the new columns)",
                              "autocommit", [sql.SQL(carried_index(idx.definition, moved, copy))],
                              weak_lock_tables=[self.label(table)], index=copy))
            renames.append(self._index_home(table, idx, copy))
        return steps, renames

    def _carry_partitioned_index(self, table: str, idx: IndexFacts, moved: dict[str, str], copy: str) -> list[Step]:
        def build(schema: str, rel: str, name: str, how: str) -> sql.Composable:
            return sql.SQL(carried_index(idx.definition, moved, name, on=(schema, rel), how=how))

        return [Step(f"{s.label} (copy of {idx.name} on the new columns)", s.kind, s.statements, s.lock_tables,
                     s.weak_lock_tables, index=s.index_name, index_schema=s.index_schema)
                for s in partitioned_index_steps(self, table, copy, build)]

    def _index_home(self, table: str, idx: IndexFacts, copy: str) -> sql.Composable:
        """At contract the copy takes the old index's place: its name, or the PRIMARY KEY / UNIQUE
        constraint it backed (ADD CONSTRAINT ... USING INDEX renames the index to the constraint)."""
        con = idx.constraint
        if not con:
            return sql.SQL("ALTER INDEX {} RENAME TO {}").format(sql.Identifier(self.schema, copy),
                                                               sql.Identifier(idx.name))
        timing = " DEFERRABLE" + (" INITIALLY DEFERRED" if con.deferred else "") if con.deferrable else ""
        return sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}{}").format(
            self.t(table), sql.Identifier(con.name), sql.SQL("PRIMARY KEY" if con.type == "p" else "UNIQUE"),
            sql.Identifier(copy), sql.SQL(timing))

    def _carry_constraints(self, table: str, moved: dict[str, str]) -> tuple[list[Step], list[sql.Composable]]:
        """The table's foreign keys and CHECK constraints on a replaced column, added again on the new
        columns NOT VALID (new rows are checked at once), validated at contract with a weak lock
        (unless the original was NOT VALID itself: old rows may break it) and given the original's
        name once DROP COLUMN has taken the original away."""
        steps: list[Step] = []
        renames: list[sql.Composable] = []
        facts = self.facts.tables[table]
        carried: list[tuple[str, ForeignKeyFacts | CheckFacts, Callable[[str, dict[str, str], str], str]]] = [
            *(("foreign key", fk, carried_foreign_key) for fk in facts.foreign_keys),
            *(("check", ck, carried_check) for ck in facts.checks)]
        for what, con, carry in carried:
            if not set(con.columns) & set(moved):
                continue
            copy = _name(con.name, self.version)
            if isinstance(con, ForeignKeyFacts) and self._foreign_keys_per_partition(table):
                steps += self._carry_partitioned_foreign_key(table, con, moved, copy)
                # In contract's finish, after the new columns took their final names.
                visible = {phys: vis for vis, phys in self.layout[table]}
                final = {old: visible.get(new, new) for old, new in moved.items()}
                renames += [sql.SQL("ALTER TABLE {} ADD {}").format(self.t(table), sql.SQL(
                    carried_foreign_key(con.definition, final, copy, valid=True))),
                    sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                        self.t(table), sql.Identifier(copy), sql.Identifier(con.name))]
                continue
            clause = carry(con.definition, moved, copy)
            steps.append(Step(f"add {what} {copy} on the new columns (NOT VALID, copy of {con.name})", "tx",
                              [sql.SQL("ALTER TABLE {} ADD {}").format(self.t(table), sql.SQL(clause))],
                              [self.label(table)]))
            if con.validated:
                self.validate(f"validate {what} {copy}", table, copy)
            renames.append(sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                self.t(table), sql.Identifier(copy), sql.Identifier(con.name)))
        return steps, renames


    def _foreign_keys_per_partition(self, table: str) -> bool:
        """PostgreSQL before 18 refuses a NOT VALID foreign key on a partitioned table."""
        return bool(partitions(self, table)) and self.facts.server_version < 180000

    def _carry_partitioned_foreign_key(self, table: str, fk: ForeignKeyFacts, moved: dict[str, str],
                                       copy: str) -> list[Step]:
        """The copy NOT VALID on each leaf partition, validated there at contract; contract's finish then adds
        it on the table (PostgreSQL attaches the valid leaf constraints, no scan) and gives it the old name.
        On a partitioned table every foreign key is valid before 18, so the copy is validated too."""
        steps = []
        for p in partitions(self, table):
            if p.leaf:
                steps.append(Step(f"add foreign key {copy} on partition {qualified(p.schema, p.name)} (NOT VALID, "
                                  f"copy of {fk.name})", "tx", [sql.SQL("ALTER TABLE {} ADD {}").format(
                                      sql.Identifier(p.schema, p.name),
                                      sql.SQL(carried_foreign_key(fk.definition, moved, copy)))],
                                  [qualified(p.schema, p.name)]))
                self.validate(f"validate foreign key {copy} on partition {qualified(p.schema, p.name)}", p, copy)
        return steps


def plan_phases(ops: OpsFile, version: str, captured: CatalogFacts | Mapping[str, Any]) -> Phases:
    """The phases' steps; ``captured``: the facts ``capture`` read, or their JSON from ``ops_state``."""
    facts = captured if isinstance(captured, CatalogFacts) else CatalogFacts.from_json(captured)
    return Planner(ops, version, facts).plan()


def sql_set_self(column: str) -> str:
    """The backfill's no-op SET: it fires the sync trigger, which computes the new value."""
    return f"{quote(column)} = {quote(column)}"




class StepPlanner:
    """How :meth:`pgshift.migrations.model.Migration.steps` becomes the engine's steps on a server of
    ``server_major``: a SQL migration's part through the runner's ``sql_steps`` (from statement ``done``),
    an operations migration's phase through :func:`plan_phases` with the facts ``captured`` before its
    expand (:func:`capture`, or their JSON from ``ops_state``)."""

    def __init__(self, server_major: int, captured: CatalogFacts | Mapping[str, Any] | None = None, *,
                 done: int = 0) -> None:
        self.server_major = server_major
        self.captured = captured
        self.done = done

    def sql_steps(self, migration: SqlMigration, statements: Sequence[Statement]) -> list[Step]:
        return list[Step](sql_steps(migration, statements, self.server_major, self.done).steps)

    def ops_steps(self, migration: OpsMigration, phase: OpsPhase) -> list[Step]:
        if self.captured is None:
            raise ValueError(f"{migration.label}: its steps are planned from the catalog facts captured before "
                             "its expand; none were given.")
        phases = plan_phases(migration.ops, migration.version, self.captured)
        return {"expand": phases.expand, "contract": phases.contract, "abort": phases.abort}[phase]
