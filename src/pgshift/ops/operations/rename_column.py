"""rename_column: a new column under the new name, kept in sync with the old one; the new version
sees only the new name, the old version only the old one; contract drops the old column."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.ops.operations import _copy
from pgshift.ops.operations._base import Plan, key, quote


@dataclass(frozen=True)
class RenameColumn(_copy.CopiedColumn):
    kind = "rename_column"
    summary = "Rename a column: both names work, each for its application version, until contract."
    example = "rename_column: {table: users, from: email, to: email_address}"
    setup = ("CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL); "
             "INSERT INTO users SELECT g, g || '@x' FROM generate_series(1, 50) g;")

    table: Annotated[str, "The table, in the file's `schema`."]
    from_: Annotated[str, "The column's current name."] = key("from")
    to: Annotated[str, "Its new name."] = key("to")

    def shape(self, plan: Plan) -> _copy.Copy:
        info = plan.column(self, self.from_)
        typed = f"{info.type} {info.collate}" if info.collate else info.type  # same sort order
        return _copy.Copy(self.table, self.from_, self.to, self.to, typed, quote(self.from_), quote(self.to),
                          info.default, False)

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        """Contracted only: expanded, the new column stands beside the old one (the linter copies it)."""
        return [sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(
            sql.Identifier(schema, self.table), sql.Identifier(self.from_), sql.Identifier(self.to))]


OPERATION = RenameColumn
