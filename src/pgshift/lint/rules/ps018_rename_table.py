"""PS018 rename-table."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import relname


def check(ctx: Ctx) -> Iterator[Hit]:
    if ctx.body.get("renameType") not in ("OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW"):
        return
    table = relname(ctx.body.get("relation"))
    new = ctx.body.get("newname")
    yield Hit(f"RENAME {table} TO {new} breaks the application version still running: its queries name "
              f"{table}.", table=table,
              fix=(f"ALTER TABLE {table} RENAME TO {new};\nCREATE VIEW {table} AS SELECT * FROM {new};  -- "
                   "same transaction: old name keeps working (simple views are updatable); drop the view later"))


RULE = Rule(
    id="PS018", name="rename-table",
    summary="Renaming a table (or view) breaks the running application version.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=False, versions="",
    bad="ALTER TABLE users RENAME TO accounts;",
    good="CREATE VIEW accounts AS SELECT * FROM users;",
    safe="Rename and create an updatable view with the old name in the same transaction; drop it after every "
    "app instance uses the new name.",
    severity="error", kinds=("RenameStmt",), check=check, category="compatibility",
)
