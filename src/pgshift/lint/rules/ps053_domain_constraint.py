"""PS053 domain-constraint."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import qualified, strings


def check(ctx: Ctx) -> Iterator[Hit]:
    if ctx.kind == "CreateDomainStmt":
        checks = [c for c in ctx.body.get("constraints") or ()
                  if c.get("Constraint", {}).get("contype") == "CONSTR_CHECK"]
        if checks:
            yield Hit(f"Domain {qualified(strings(ctx.body.get('domainname')))} has a CHECK: changing it later "
                      "re-checks every column of the domain in every table under strong locks.", severity="note",
                      fix="Put CHECK constraints on the table columns (they support NOT VALID).")
    elif ctx.body.get("subtype") == "C":
        con = ctx.body.get("def", {}).get("Constraint", {})
        if not con.get("skip_validation"):
            yield Hit(f"ALTER DOMAIN {qualified(strings(ctx.body.get('typeName')))} ADD CONSTRAINT checks every "
                      "column using the domain, in every table, while blocking writes to them.",
                      fix="ALTER DOMAIN ... ADD CONSTRAINT ... NOT VALID; then VALIDATE CONSTRAINT later.")


RULE = Rule(
    id="PS053", name="domain-constraint",
    summary="Domain CHECK constraints are re-validated across every table using the domain.",
    lock="SHARE", blocks=("writes", "ddl"), rewrites=False, scans=True, versions="",
    bad="ALTER DOMAIN positive_int ADD CONSTRAINT positive CHECK (VALUE > 0);",
    good="ALTER DOMAIN positive_int ADD CONSTRAINT positive CHECK (VALUE > 0) NOT VALID;",
    safe="Prefer table CHECK constraints; add domain constraints NOT VALID and validate later.",
    severity="warning", kinds=("CreateDomainStmt", "AlterDomainStmt"), check=check, applies_to_new_tables=True,
)
