"""rename_table: renamed at expand; the old name stays as a view (with the table's rights) until contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from psycopg import sql

from pgshift.ops.facts import Rights
from pgshift.ops.operations._base import VIEW_PRIVILEGES, Operation, Plan, grant_option, key, role


@dataclass(frozen=True)
class RenameTable(Operation):
    kind = "rename_table"
    summary = "Rename a table; the old name stays a view over it until contract."
    example = "rename_table: {from: people, to: persons}"
    setup = "CREATE TABLE people (id bigint PRIMARY KEY, name text);"

    from_: Annotated[str, "The table's current name, in the file's `schema`."] = key("from")
    to: Annotated[str, "Its new name."] = key("to")  # made by a function: mypy sees a default before it

    def _compatibility_grants(self, plan: Plan) -> list[sql.Composable]:
        """The renamed table's rights on the view that keeps its old name (the app still using the old
        name is often not the owner: without them it gets "permission denied" at the rename)."""
        rights = plan.facts.renamed.get(self.from_, Rights())
        view = plan.t(self.from_)
        grants: list[sql.Composable] = [
            sql.SQL("GRANT {} ON {} TO {}{}").format(sql.SQL(g.privilege), view, role(g.grantee),
                                                     grant_option(g.grantable))
            for g in rights.grants if g.privilege in VIEW_PRIVILEGES]
        grants += [sql.SQL("GRANT {} ({}) ON {} TO {}{}").format(
            sql.SQL(g.privilege), sql.Identifier(g.column), view, role(g.grantee), grant_option(g.grantable))
            for g in rights.column_grants]
        if rights.owner and rights.owner != rights.runner:
            grants.append(sql.SQL("GRANT ALL ON {} TO {}").format(view, sql.Identifier(rights.owner)))
        return grants

    def expand(self, plan: Plan, index: int) -> None:
        old, new = self.from_, self.to
        invoker = "WITH (security_invoker = true) " if plan.facts.server_version >= 150000 else ""
        plan.expand(f"rename table {old} to {new}, keep {old} as a view", "tx", [
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(plan.t(old), sql.Identifier(new)),
            sql.SQL("CREATE VIEW {} {}AS SELECT * FROM {}").format(plan.t(old), sql.SQL(invoker), plan.t(new)),
            *self._compatibility_grants(plan),
        ], [plan.label(old)])
        if old in plan.layout:
            plan.layout[new] = plan.layout[old]

    def contract(self, plan: Plan, index: int) -> None:
        plan.contract(f"drop compatibility view {self.from_}", "tx", [
            sql.SQL("DROP VIEW IF EXISTS {}").format(plan.t(self.from_))], [plan.label(self.from_)])

    def abort(self, plan: Plan, index: int) -> None:
        old, new = self.from_, self.to
        plan.abort(f"rename table {new} back to {old}", "tx", [
            sql.SQL("DROP VIEW IF EXISTS {}").format(plan.t(old)),
            sql.SQL("ALTER TABLE IF EXISTS {} RENAME TO {}").format(plan.t(new), sql.Identifier(old)),
        ], [plan.label(new)])

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        return [sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(schema, self.from_),
                                                              sql.Identifier(self.to))]


OPERATION = RenameTable
