"""drop_column: hidden from the new version at expand (a trigger fills it for the new version's inserts
when given ``down``), dropped at contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.errors import MigrationSourceError
from pgshift.ops.operations._base import Operation, Plan
from pgshift.ops.sync import SyncRule


@dataclass(frozen=True)
class DropColumn(Operation):
    kind = "drop_column"
    summary = "Hide a column from the new version at expand and drop it at contract."
    example = "drop_column: {table: users, column: legacy_flag}"
    setup = "CREATE TABLE users (id bigint PRIMARY KEY, legacy_flag boolean); INSERT INTO users VALUES (1, true);"

    table: Annotated[str, "The table, in the file's `schema`."]
    column: Annotated[str, "The column to drop."]
    down: Annotated[str | None, "SQL expression giving the hidden column its value for rows the new version inserts "
                               "(needed when it is NOT NULL without a default)."] = None

    def expand(self, plan: Plan, index: int) -> None:
        table, name = self.table, self.column
        info = plan.column(self, name)
        layout = plan.touch_layout(table)
        layout[:] = [(v, p) for v, p in layout if v != name]
        if self.down is None and info.notnull and info.default is None and not info.special:
            raise MigrationSourceError(
                f"{self.origin}: {table}.{name} is NOT NULL without a default, so inserts by the new version (which "
                "no longer sees it) would fail; give a 'down' expression for its value.")
        if self.down is not None:
            create = plan.sync(index, table, SyncRule("down", name, None, None, self.down, {},
                                                      plan.new_namespace(table)))
            plan.expand(f"hide {table}.{name}; trigger fills it for new-version writes", "tx", create,
                        [plan.label(table)])

    def contract(self, plan: Plan, index: int) -> None:
        plan.finish(self.table, plan.drop_sync(index, self.table) if self.down is not None else [], triggers=True)
        plan.finish(self.table, [sql.SQL("ALTER TABLE {} DROP COLUMN IF EXISTS {}").format(
            plan.t(self.table), sql.Identifier(self.column))])

    def abort(self, plan: Plan, index: int) -> None:
        if self.down is not None:
            plan.abort(f"drop trigger for {self.table}.{self.column}", "tx", plan.drop_sync(index, self.table),
                       [plan.label(self.table)])

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        return [sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(
            sql.Identifier(schema, self.table), sql.Identifier(self.column))] if contracted else []


OPERATION = DropColumn
