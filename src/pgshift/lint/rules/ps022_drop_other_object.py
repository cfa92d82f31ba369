"""PS022 drop-other-object."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule

_KINDS = {
    "OBJECT_VIEW": "VIEW", "OBJECT_MATVIEW": "MATERIALIZED VIEW", "OBJECT_SEQUENCE": "SEQUENCE",
    "OBJECT_TYPE": "TYPE", "OBJECT_DOMAIN": "DOMAIN", "OBJECT_FUNCTION": "FUNCTION",
    "OBJECT_PROCEDURE": "PROCEDURE", "OBJECT_TRIGGER": "TRIGGER", "OBJECT_EXTENSION": "EXTENSION",
    "OBJECT_FOREIGN_TABLE": "FOREIGN TABLE",
}


def check(ctx: Ctx) -> Iterator[Hit]:
    what = _KINDS.get(str(ctx.body.get("removeType")))
    if what is None:
        return
    cascade = " with CASCADE (dependent objects go too)" if ctx.body.get("behavior") == "DROP_CASCADE" else ""
    yield Hit(f"DROP {what}{cascade}: any application version still using it fails.",
              fix="Drop it only after every running app version stopped using it; keep the DDL to recreate it.")


RULE = Rule(
    id="PS022", name="drop-other-object",
    summary="Dropping a view, sequence, type, function, trigger or extension the app may still use.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=False, scans=False, versions="",
    bad="DROP VIEW active_users CASCADE;",
    good="CREATE OR REPLACE VIEW active_users AS SELECT 1 AS id;",
    safe="Drop after the application stopped using the object.",
    severity="warning", kinds=("DropStmt",), check=check, category="compatibility",
)
