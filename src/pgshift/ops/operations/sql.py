"""sql: statements of your own for each phase (``up`` at expand, ``contract``, ``down`` at abort)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.migrations.splitter import split_sql
from pgshift.ops.operations._base import Operation, Plan, key


@dataclass(frozen=True)
class Sql(Operation):
    kind = "sql"
    summary = "Run SQL of your own: `up` at expand, `contract` at contract, `down` at abort."
    example = ("sql: {up: \"CREATE VIEW active_users AS SELECT * FROM users WHERE active\", "
               "down: \"DROP VIEW active_users\"}")
    setup = "CREATE TABLE users (id bigint PRIMARY KEY, active boolean);"

    up: Annotated[str, "SQL run at expand (its statements in one transaction)."]
    down: Annotated[str | None, "SQL undoing `up`, run by abort (without it abort cannot undo it, and warns)."] = None
    contract_sql: Annotated[str | None, "SQL run at contract."] = key("contract", None)

    def statements(self, text: str, part: str) -> list[sql.Composable]:
        return [sql.SQL(s.sql) for s in split_sql(text, file=f"{self.origin}.{part}")]

    def expand(self, plan: Plan, index: int) -> None:
        plan.expand(f"sql #{index} up", "tx", self.statements(self.up, "up"))

    def contract(self, plan: Plan, index: int) -> None:
        if self.contract_sql:
            plan.contract(f"sql #{index} contract", "tx", self.statements(self.contract_sql, "contract"))

    def abort(self, plan: Plan, index: int) -> None:
        if self.down:
            plan.abort(f"sql #{index} down", "tx", self.statements(self.down, "down"))
        else:
            plan.abort(f"sql #{index} has no down", "tx",
                       warning=f"{self.origin}: no 'down' part; abort cannot undo it.")

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        out: list[sql.Composable | str] = []
        for part, text in (("up", self.up), ("contract", self.contract_sql if contracted else None)):
            if text:
                out += [s.sql for s in split_sql(text, file=f"{self.origin}.{part}")]
        return out


OPERATION = Sql
