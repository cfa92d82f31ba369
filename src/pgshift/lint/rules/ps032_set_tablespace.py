"""PS032 set-tablespace."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.rules._helpers import alter_cmds


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, "AT_SetTableSpace"):
        yield Hit(f"SET TABLESPACE {cmd.get('name')} copies {table} file by file under an ACCESS EXCLUSIVE lock.",
                  table=table, fix="Use pg_repack --tablespace to move it online.")


RULE = Rule(
    id="PS032", name="set-tablespace",
    summary="SET TABLESPACE copies the table under ACCESS EXCLUSIVE.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=True, scans=True, versions="",
    bad="ALTER TABLE orders SET TABLESPACE fast_ssd;",
    good="ALTER TABLE orders SET (fillfactor = 90);",
    safe="pg_repack --tablespace moves a table online.",
    severity="error", kinds=("AlterTableStmt",), check=check,
    subtypes=("AT_SetTableSpace",), impact_scaled=True,
)
