"""PS045 prefer-bigint-keys."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import column_constraints, type_of
from pgshift.lint.rules._helpers import new_columns

_SMALL = {"int4": "integer", "int2": "smallint", "serial": "serial", "serial4": "serial",
          "smallserial": "smallserial", "serial2": "smallserial", "int": "integer", "integer": "integer"}


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, coldef in new_columns(ctx):
        name = str(coldef.get("colname", ""))
        type_name = type_of(coldef.get("typeName"))[0]
        if type_name not in _SMALL:
            continue
        key = any(c.get("contype") in ("CONSTR_PRIMARY", "CONSTR_FOREIGN", "CONSTR_IDENTITY")
                  for c in column_constraints(coldef))
        if key or name == "id" or name.endswith("_id"):
            yield Hit(f"{table}.{name} is a key of type {_SMALL[type_name]}: it runs out at "
                      f"{'32,767' if '2' in type_name or 'small' in type_name else '2,147,483,647'}, and widening it "
                      "later rewrites the table (and every referencing one).", table=table,
                      fix=f"{name} bigint (or bigint GENERATED ALWAYS AS IDENTITY)")


RULE = Rule(
    id="PS045", name="prefer-bigint-keys",
    summary="Integer/smallint/serial keys overflow; changing them later rewrites the table.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="CREATE TABLE trades (id serial PRIMARY KEY, user_id int);",
    good="CREATE TABLE trades (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id bigint);",
    safe="Use bigint for primary and foreign keys.",
    severity="warning", kinds=("CreateStmt", "AlterTableStmt"), check=check,
    subtypes=("AT_AddColumn",), applies_to_new_tables=True,
    category="types",
)
