"""PS034 create-trigger."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import relname


def check(ctx: Ctx) -> Iterator[Hit]:
    table = relname(ctx.body.get("relation"))
    yield Hit(f"CREATE TRIGGER {ctx.body.get('trigname')} takes a SHARE ROW EXCLUSIVE lock on {table} (writes "
              "wait, and queue behind long reads), and adds work to every write from then on.", table=table,
              fix="SET lock_timeout first and keep the trigger function cheap; create it at a quiet time.")


RULE = Rule(
    id="PS034", name="create-trigger",
    summary="CREATE TRIGGER blocks writes while it waits for its lock, and slows every later write.",
    lock="SHARE ROW EXCLUSIVE", blocks=("writes", "ddl"), rewrites=False, scans=False, versions="",
    bad="CREATE TRIGGER orders_audit AFTER UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION audit();",
    good="CREATE OR REPLACE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;",
    safe="Set a short lock_timeout and retry; keep trigger functions cheap.",
    severity="warning", kinds=("CreateTrigStmt",), check=check,
)
