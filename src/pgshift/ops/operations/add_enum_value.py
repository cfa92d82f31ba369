"""add_enum_value: ADD VALUE IF NOT EXISTS, outside a transaction; abort cannot remove it (it warns)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.errors import MigrationSourceError
from pgshift.ops.operations._base import Operation, Plan


@dataclass(frozen=True)
class AddEnumValue(Operation):
    kind = "add_enum_value"
    summary = "Add a value to an enum type (PostgreSQL cannot remove it again: abort keeps it)."
    example = "add_enum_value: {type: order_status, value: refunded, after: paid}"
    setup = "CREATE TYPE order_status AS ENUM ('new', 'paid');"

    type: Annotated[str, "The enum type, in the file's `schema`."]
    value: Annotated[str, "The new value."]
    before: Annotated[str | None, "The existing value it goes before (or give `after`)."] = None
    after: Annotated[str | None, "The existing value it goes after (or give `before`)."] = None

    def validate(self) -> None:
        if self.before and self.after:
            raise MigrationSourceError(f"{self.origin}: give 'before' or 'after', not both.")

    def _add(self, schema: str) -> sql.Composable:
        statement = sql.SQL("ALTER TYPE {} ADD VALUE IF NOT EXISTS {}").format(
            sql.Identifier(schema, self.type), sql.Literal(self.value))
        for word, neighbour in (("BEFORE", self.before), ("AFTER", self.after)):
            if neighbour:
                statement = sql.SQL("{} {} {}").format(statement, sql.SQL(word), sql.Literal(neighbour))
        return statement

    def expand(self, plan: Plan, index: int) -> None:
        plan.expand(f"add enum value {self.value!r}", "autocommit", [self._add(plan.schema)])

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        return [self._add(schema)]

    def abort(self, plan: Plan, index: int) -> None:
        plan.abort(f"keep enum value {self.value!r}", "tx", warning=(
            f"PostgreSQL cannot remove an enum value: {self.type}.{self.value} stays after abort "
            "(unused values are harmless)."))


OPERATION = AddEnumValue
