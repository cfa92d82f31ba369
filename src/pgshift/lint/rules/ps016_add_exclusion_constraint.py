"""PS016 add-exclusion-constraint."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.rules._helpers import alter_cmds, constraint_of


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, "AT_AddConstraint"):
        if constraint_of(cmd).get("contype") == "CONSTR_EXCLUSION":
            yield Hit(f"ADD CONSTRAINT ... EXCLUDE on {table} builds an index and checks every row under an "
                      "ACCESS EXCLUSIVE lock; exclusion constraints have no NOT VALID or USING INDEX form.",
                      table=table, fix="Create the table with the constraint, or add it while the table is "
                      "small; otherwise enforce in the application or a trigger first.")


RULE = Rule(
    id="PS016", name="add-exclusion-constraint",
    summary="ADD EXCLUDE constraint builds an index and scans under ACCESS EXCLUSIVE, with no safe form.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=True, versions="",
    bad="ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);",
    good="CREATE TABLE bookings2 (room int, during tstzrange, EXCLUDE USING gist (room WITH =, during WITH &&));",
    safe="Add exclusion constraints when the table is created or still small.",
    severity="error", kinds=("AlterTableStmt",), check=check,
    subtypes=("AT_AddConstraint",), impact_scaled=True,
)
