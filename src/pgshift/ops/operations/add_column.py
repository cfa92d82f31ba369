"""add_column: metadata-only when its default is a constant; otherwise added empty, kept filled by a
trigger for the old version's writes and backfilled in batches (NOT NULL through a validated check)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.errors import MigrationSourceError
from pgshift.ops.operations._base import Column, Operation, Plan, add_not_null_check, is_constant, quote
from pgshift.ops.sync import SyncRule


@dataclass(frozen=True)
class AddColumn(Operation):
    kind = "add_column"
    summary = ("Add a column; a volatile default or an `up` expression fills existing rows in batches, and "
               "NOT NULL is enforced at contract.")
    example = "add_column: {table: users, column: {name: plan, type: text, nullable: false, default: \"'free'\"}}"
    setup = "CREATE TABLE users (id bigint PRIMARY KEY, email text); INSERT INTO users VALUES (1, 'a@x');"

    table: Annotated[str, "The table, in the file's `schema`."]
    column: Annotated[Column, "The new column (see Columns)."]
    up: Annotated[str | None, "SQL expression filling existing rows and the old version's inserts (it may name the "
                             "table's columns)."] = None

    def validate(self) -> None:
        if not self.column.nullable and self.column.default is None and not self.up:
            raise MigrationSourceError(f"{self.origin}: a NOT NULL column needs a 'default' or an 'up' "
                                       "expression to fill the existing rows.")

    @property
    def filled(self) -> bool:
        """Filled by a trigger and a backfill; otherwise metadata-only (PostgreSQL 11+: no rewrite)."""
        return self.up is not None or (self.column.default is not None and not is_constant(self.column.default))

    def expand(self, plan: Plan, index: int) -> None:
        table, column = self.table, self.column
        col = sql.Identifier(column.name)
        plan.touch_layout(table).append((column.name, column.name))
        if not self.filled:
            definition = sql.SQL("{} {}").format(col, sql.SQL(column.type))
            if column.default is not None:
                definition = sql.SQL("{} DEFAULT {}").format(definition, sql.SQL(column.default))
            if not column.nullable:
                definition = sql.SQL("{} NOT NULL").format(definition)
            plan.expand(f"add column {table}.{column.name}", "tx", [
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {}").format(plan.t(table), definition)],
                [plan.label(table)])
            return
        fill = self.up if self.up is not None else column.default
        assert fill is not None
        statements: list[sql.Composable] = [sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
            plan.t(table), col, sql.SQL(column.type))]
        if column.default is not None:
            statements.append(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                plan.t(table), col, sql.SQL(column.default)))
        if not column.nullable:
            statements.append(add_not_null_check(plan, table, plan.not_null_check(table, column.name), column.name))
        create = plan.sync(index, table, SyncRule("fill", column.name, None, fill, None, plan.old_namespace(table), {}))
        plan.expand(f"add column {table}.{column.name} with fill trigger", "tx", statements + create,
                    [plan.label(table)])
        plan.backfill(index, table, column.name, f"{quote(column.name)} IS NULL")

    def contract(self, plan: Plan, index: int) -> None:
        if not self.filled:
            return
        drop = plan.drop_sync(index, self.table)
        if not self.column.nullable:
            plan.contract_not_null(self.table, self.column.name, plan.not_null_check(self.table, self.column.name),
                                   drop)
        else:
            plan.finish(self.table, drop, triggers=True)

    def abort(self, plan: Plan, index: int) -> None:
        drop = plan.drop_sync(index, self.table) if self.filled else []
        plan.abort(f"drop column {self.table}.{self.column.name}", "tx", [*drop, sql.SQL(
            "ALTER TABLE {} DROP COLUMN IF EXISTS {}").format(plan.t(self.table), sql.Identifier(self.column.name))],
            [plan.label(self.table)])

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        # NOT NULL at once only on the metadata-only path; otherwise through contract's validated check.
        not_null = not self.column.nullable and (contracted or not self.filled)
        default = sql.SQL(" DEFAULT {}").format(sql.SQL(self.column.default)) if self.column.default is not None \
            else sql.SQL("")
        return [sql.SQL("ALTER TABLE {} ADD COLUMN {} {}{}{}").format(
            sql.Identifier(schema, self.table), sql.Identifier(self.column.name), sql.SQL(self.column.type), default,
            sql.SQL(" NOT NULL" if not_null else ""))]


OPERATION = AddColumn
