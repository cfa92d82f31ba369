"""PS035 enable-disable-trigger."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.rules._helpers import alter_cmds

_SUBTYPES = ("AT_EnableTrig", "AT_DisableTrig", "AT_EnableAlwaysTrig", "AT_EnableReplicaTrig",
             "AT_EnableTrigAll", "AT_DisableTrigAll", "AT_EnableTrigUser", "AT_DisableTrigUser")


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, *_SUBTYPES):
        verb = "DISABLE" if "Disable" in str(cmd.get("subtype")) else "ENABLE"
        all_ = " ALL (including foreign-key triggers: integrity is no longer enforced)" if "All" in str(
            cmd.get("subtype")) and verb == "DISABLE" else ""
        yield Hit(f"{verb} TRIGGER{all_} on {table} takes a SHARE ROW EXCLUSIVE lock: writes wait.", table=table,
                  fix="Set a short lock_timeout; prefer a flag the trigger function reads over disabling it.")


RULE = Rule(
    id="PS035", name="enable-disable-trigger",
    summary="ENABLE/DISABLE TRIGGER blocks writes; DISABLE TRIGGER ALL also turns off foreign keys.",
    lock="SHARE ROW EXCLUSIVE", blocks=("writes", "ddl"), rewrites=False, scans=False, versions="",
    bad="ALTER TABLE orders DISABLE TRIGGER ALL;",
    good="COMMENT ON TRIGGER orders_audit ON orders IS 'kept enabled';",
    safe="Short lock_timeout; gate trigger work on a setting instead of disabling it.",
    severity="warning", kinds=("AlterTableStmt",), check=check, subtypes=_SUBTYPES,
)
