"""PS052 unindexed-foreign-key."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import Node, column_constraints, relname, strings
from pgshift.lint.rules._helpers import alter_cmds, constraint_of


def _foreign_keys(ctx: Ctx) -> Iterator[tuple[str, list[str], Node]]:
    if ctx.kind == "CreateStmt":
        table = relname(ctx.body.get("relation"))
        for elt in ctx.body.get("tableElts") or ():
            if "Constraint" in elt and elt["Constraint"].get("contype") == "CONSTR_FOREIGN":
                yield table, strings(elt["Constraint"].get("fk_attrs")), elt["Constraint"]
            for con in column_constraints(elt.get("ColumnDef", {})):
                if con.get("contype") == "CONSTR_FOREIGN":
                    yield table, [str(elt["ColumnDef"].get("colname"))], con
        return
    for table, cmd in alter_cmds(ctx, "AT_AddConstraint", "AT_AddColumn"):
        con = constraint_of(cmd)
        if con.get("contype") == "CONSTR_FOREIGN":
            yield table, strings(con.get("fk_attrs")), con
        coldef = (cmd.get("def") or {}).get("ColumnDef", {})
        for con in column_constraints(coldef):
            if con.get("contype") == "CONSTR_FOREIGN":
                yield table, [str(coldef.get("colname"))], con


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cols, con in _foreign_keys(ctx):
        if not cols:
            continue
        known = ctx.table(table)
        if ctx.kind == "AlterTableStmt" and (known is None or known.stub):
            continue  # nothing is known about the table's indexes
        if known is not None and known.has_index_on(cols):
            continue
        if ctx.index_created_later(table, cols[0]):
            continue
        ref = relname(con.get("pktable"))
        yield Hit(f"Foreign key {table}({', '.join(cols)}) -> {ref} has no index on the referencing columns: every "
                  f"DELETE or key UPDATE on {ref} scans {table}, and joins cannot use an index.", table=table,
                  fix=f"CREATE INDEX CONCURRENTLY ON {table} ({', '.join(cols)});  -- own non-transactional migration")


RULE = Rule(
    id="PS052", name="unindexed-foreign-key",
    summary="A foreign key whose referencing columns have no index makes parent deletes scan the child.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="CREATE TABLE trades (id bigint PRIMARY KEY, user_id bigint REFERENCES users (id));",
    good="CREATE TABLE trades (id bigint PRIMARY KEY, user_id bigint REFERENCES users (id));\n"
    "CREATE INDEX trades_user_id_idx ON trades (user_id);",
    safe="Index the referencing columns (CREATE INDEX CONCURRENTLY on existing tables).",
    severity="warning", kinds=("CreateStmt", "AlterTableStmt"), check=check,
    subtypes=("AT_AddConstraint", "AT_AddColumn"), applies_to_new_tables=True,
    category="types",
)
