"""PS059 alter-system."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import func_names


def check(ctx: Ctx) -> Iterator[Hit]:
    if ctx.kind == "AlterSystemStmt":
        name = (ctx.body.get("setstmt") or {}).get("name") or "a setting"
        yield Hit(f"ALTER SYSTEM changes {name} for the whole server, every database and session, from the next "
                  "reload on: it is not part of the migration's transaction (it cannot run in one), a rollback does "
                  "not undo it, and it needs a superuser.",
                  fix=f"-- pgshift:set {name}=...  (this migration's statements only: SET LOCAL in its transactions, "
                      "SET and RESET around its autocommit statements)")
    elif "pg_reload_conf" in func_names(ctx.body):
        yield Hit("pg_reload_conf() applies every pending change of postgresql.conf and ALTER SYSTEM to the whole "
                  "server, not only this migration's, and cannot be rolled back.",
                  fix="Leave server configuration to its own change process; use SET LOCAL in the migration.")


RULE = Rule(
    id="PS059", name="alter-system",
    summary="ALTER SYSTEM and pg_reload_conf() change the whole server, outside the migration's transaction.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="ALTER SYSTEM SET maintenance_work_mem = '1GB';\nSELECT pg_reload_conf();\n"
        "CREATE INDEX CONCURRENTLY orders_user_id_idx ON orders (user_id);",
    good="-- pgshift:set maintenance_work_mem=1GB\nCREATE INDEX CONCURRENTLY orders_user_id_idx ON orders (user_id);",
    safe="Set what the migration needs for its own statements with the `-- pgshift:set name=value` directive "
         "(SET LOCAL in a transaction, SET and RESET around a non-transactional statement, checked against the "
         "server before anything runs); change server configuration through its own process.",
    severity="warning", kinds=("AlterSystemStmt", "SelectStmt"), check=check, applies_to_new_tables=True,
    category="transactions",
)
