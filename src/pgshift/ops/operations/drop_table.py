"""drop_table: the table stays until contract (the old application version may still use it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.ops.operations._base import Operation, Plan


@dataclass(frozen=True)
class DropTable(Operation):
    kind = "drop_table"
    summary = "Drop a table at contract; until then it stays for the old version."
    example = "drop_table: {table: legacy_events}"
    setup = "CREATE TABLE legacy_events (id bigint);"

    table: Annotated[str, "The table to drop, in the file's `schema`."]

    def contract(self, plan: Plan, index: int) -> None:
        plan.contract(f"drop table {self.table}", "tx", [
            sql.SQL("DROP TABLE IF EXISTS {}").format(plan.t(self.table))], [plan.label(self.table)])

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        return [sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, self.table))] if contracted else []


OPERATION = DropTable
