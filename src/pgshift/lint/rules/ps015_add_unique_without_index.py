"""PS015 add-unique-without-index."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import strings
from pgshift.lint.rules._helpers import alter_cmds, constraint_of, table_sql


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, "AT_AddConstraint"):
        con = constraint_of(cmd)
        kind = {"CONSTR_PRIMARY": "PRIMARY KEY", "CONSTR_UNIQUE": "UNIQUE"}.get(str(con.get("contype")))
        if kind is None or con.get("indexname"):
            continue
        cols = ", ".join(strings(con.get("keys")))
        name = con.get("conname") or f"{table.rsplit('.', 1)[-1]}_{'pkey' if kind == 'PRIMARY KEY' else 'key'}"
        yield Hit(f"ADD {kind} on {table} builds its index under an ACCESS EXCLUSIVE lock: reads and writes "
                  "wait for the whole build.", table=table,
                  fix=(f"CREATE UNIQUE INDEX CONCURRENTLY {name}_idx ON {table_sql(table)} ({cols});  -- own "
                       f"non-transactional migration\nALTER TABLE {table_sql(table)} ADD CONSTRAINT {name} "
                       f"{kind} USING INDEX {name}_idx;"))


RULE = Rule(
    id="PS015", name="add-unique-without-index",
    summary="ADD UNIQUE / PRIMARY KEY without USING INDEX builds the index under ACCESS EXCLUSIVE.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=True, versions="",
    bad="ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);",
    good="ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_idx;",
    safe="CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... USING INDEX (instant).",
    severity="error", kinds=("AlterTableStmt",), check=check,
    subtypes=("AT_AddConstraint",), impact_scaled=True,
)
