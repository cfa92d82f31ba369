"""The shared shape of rename_column and change_column_type: a new column kept in sync with the old
one by a trigger both ways, backfilled, and put in the old one's place at contract."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from pgshift.errors import MigrationSourceError
from pgshift.ops.facts import ColumnFacts, TableFacts
from pgshift.ops.operations._base import Operation, Plan, add_not_null_check, grant_option, quote, role
from pgshift.ops.sync import SyncRule


@dataclass(frozen=True)
class Copy:
    table: str
    old: str
    new_phys: str  # the new column
    new_visible: str  # its name in the new version (after contract)
    new_type: str
    up: str  # old -> new, for the old version's writes
    down: str  # new -> old, for the new version's writes
    default: str | None
    final_rename: bool  # contract renames the new column to the old one's name


def expand(op: Operation, plan: Plan, index: int, copy: Copy) -> None:
    table, old = copy.table, copy.old
    info = plan.column(op, old)
    if info.special:
        raise MigrationSourceError(f"{op.origin}: {table}.{old} is an identity or generated column; "
                                   "pgshift cannot duplicate it.")
    facts = plan.facts.tables[table]
    for fk in facts.referenced_by:
        if old in fk.columns:  # contract could not drop the old column under it
            raise MigrationSourceError(
                f"{op.origin}: {table}.{old} is referenced by foreign key {fk.name} on {fk.table}; "
                "pgshift cannot move a referenced column yet.",
                hint=f"drop {fk.name} first, or add a new foreign key to the new column in its own "
                "migration and drop the old one before contract.")
    for exclusion in facts.exclusions:
        if old in exclusion.columns:  # adding one again would block writes while its index builds
            raise MigrationSourceError(
                f"{op.origin}: {table}.{old} is part of exclusion constraint {exclusion.name}; pgshift cannot "
                "move it without blocking writes (ADD CONSTRAINT ... EXCLUDE holds an ACCESS EXCLUSIVE lock "
                "while its index builds).",
                hint=f"drop {exclusion.name} in an earlier migration and add it again after contract, in a "
                "quiet window.")
    if facts.partitioned:
        _refuse_on_partitioned(op, table, old, facts)
    old_ns = plan.old_namespace(table)
    layout = plan.touch_layout(table)
    layout[:] = [(copy.new_visible, copy.new_phys) if v == old else (v, p) for v, p in layout]
    new_ns = plan.new_namespace(table)
    col = sql.Identifier(copy.new_phys)
    statements: list[sql.Composable] = [sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
        plan.t(table), col, sql.SQL(copy.new_type))]
    if copy.default is not None:
        statements.append(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
            plan.t(table), col, sql.SQL(copy.default)))
    statements += _column_settings(plan, table, col, info, same_type=not copy.final_rename)  # rename: same type
    # Through a security_invoker view the querying role needs its column privileges on the new column too.
    for g in facts.rights.column_grants:
        if g.column == old:
            statements.append(sql.SQL("GRANT {} ({}) ON {} TO {}{}").format(
                sql.SQL(g.privilege), col, plan.t(table), role(g.grantee), grant_option(g.grantable)))
    if info.notnull:
        statements.append(add_not_null_check(plan, table, plan.not_null_check(table, copy.new_phys), copy.new_phys))
    create = plan.sync(index, table, SyncRule("pair", copy.new_phys, old, copy.up, copy.down, old_ns, new_ns))
    plan.expand(f"add {table}.{copy.new_phys} kept in sync with {old}", "tx", statements + create,
                [plan.label(table)])
    plan.backfill(index, table, old, f"{quote(copy.new_phys)} IS NULL")
    plan.moved.setdefault(table, {})[old] = copy.new_phys


def _refuse_on_partitioned(op: Operation, table: str, old: str, facts: TableFacts) -> None:
    """What a partitioned table cannot have moved to a new column: contract would drop the old one."""
    if old in facts.partition_key:
        raise MigrationSourceError(
            f"{op.origin}: {table}.{old} is in the partition key of {table}; PostgreSQL cannot drop a partition "
            "key column, so pgshift cannot replace it with a new one.",
            hint=f"partition a new table by the new column and move the rows into it, or keep {old} as it is.")
    for idx in facts.indexes:
        if idx.constraint is not None and old in idx.columns:  # ADD CONSTRAINT ... USING INDEX is refused there
            raise MigrationSourceError(
                f"{op.origin}: {table}.{old} is in the {'PRIMARY KEY' if idx.constraint.type == 'p' else 'UNIQUE'} "
                f"constraint {idx.constraint.name} of the partitioned table {table}; PostgreSQL cannot add such a "
                "constraint on an index built beforehand (USING INDEX) on a partitioned table, so the copy could only "
                "be added at contract with a build holding writes back on every partition.",
                hint=f"drop {idx.constraint.name} in an earlier migration and add it again after contract, in a "
                "quiet window.")


def contract(op: Operation, plan: Plan, index: int, copy: Copy) -> None:
    table, col = copy.table, sql.Identifier(copy.new_phys)
    plan.finish(table, plan.drop_sync(index, table), triggers=True)
    finish: list[sql.Composable] = [sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(
        plan.t(table), sql.Identifier(copy.old))]
    if copy.final_rename:
        finish.append(sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(
            plan.t(table), col, sql.Identifier(copy.new_visible)))
    if plan.column(op, copy.old).notnull:
        check = plan.not_null_check(table, copy.new_phys)
        plan.validate(f"validate NOT NULL check on {table}.{copy.new_phys}", table, check)
        finish += [sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(plan.t(table), col),
                   sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(plan.t(table), sql.Identifier(check))]
        # SET NOT NULL must come before the rename, which changes the column's name.
        if copy.final_rename:
            finish.append(finish.pop(-3))
    plan.finish(table, finish)


def abort(plan: Plan, index: int, copy: Copy) -> None:
    plan.abort(f"drop {copy.table}.{copy.new_phys} and its trigger", "tx", [
        *plan.drop_sync(index, copy.table), sql.SQL("ALTER TABLE {} DROP COLUMN IF EXISTS {}").format(
            plan.t(copy.table), sql.Identifier(copy.new_phys))], [plan.label(copy.table)])


def _column_settings(plan: Plan, table: str, col: sql.Identifier, info: ColumnFacts, *,
                     same_type: bool) -> list[sql.Composable]:
    """The old column's comment and statistics target (a planner setting: losing it can change
    plans), and for the same type its storage and compression, given to the new column."""
    alter = sql.SQL("ALTER TABLE {} ALTER COLUMN {} ").format(plan.t(table), col)
    out: list[sql.Composable] = []
    if info.comment is not None:
        out.append(sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(plan.t(table), col, sql.Literal(info.comment)))
    if info.statistics is not None:
        out.append(alter + sql.SQL("SET STATISTICS {}").format(sql.Literal(int(info.statistics))))
    if same_type and info.storage:
        storage = {"p": "PLAIN", "e": "EXTERNAL", "m": "MAIN", "x": "EXTENDED"}[info.storage]
        out.append(alter + sql.SQL("SET STORAGE {}").format(sql.SQL(storage)))
    if same_type and info.compression:
        out.append(alter + sql.SQL("SET COMPRESSION {}").format(sql.SQL(info.compression)))
    return out


@dataclass(frozen=True)
class CopiedColumn(Operation):
    """An operation whose three phases are this module's: it only says what its copy looks like."""

    def shape(self, plan: Plan) -> Copy:
        raise NotImplementedError

    def expand(self, plan: Plan, index: int) -> None:
        expand(self, plan, index, self.shape(plan))

    def contract(self, plan: Plan, index: int) -> None:
        contract(self, plan, index, self.shape(plan))

    def abort(self, plan: Plan, index: int) -> None:
        abort(plan, index, self.shape(plan))
