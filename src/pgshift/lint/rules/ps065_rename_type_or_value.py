"""PS065 rename-type-or-value."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import qualified, relname, strings


def _named(name: str) -> str:
    """A pattern for the type name as SQL may write it: quoted exactly, or unquoted if it is lower case."""
    quoted = '"' + re.escape(name.replace('"', '""')) + '"'
    return f"(?:{quoted}|{re.escape(name)}\\b)" if name == name.lower() else quoted


def _replaced_here(ctx: Ctx, old: str) -> bool:
    """Is this rename half of a swap the same migration completes, as Prisma writes an enum change: the type
    was created earlier in the migration, or a type takes the old name again later (renamed or created)?"""
    name = _named(old.split(".")[-1])
    created = re.compile(rf"^\s*create\s+type\s+(?:\S+\.)?{name}", re.I)
    given_back = re.compile(rf"^\s*alter\s+type\s+.*\srename\s+to\s+{name}\s*;?\s*$", re.I | re.S)
    earlier = ctx.all_sql[:ctx.position]
    return any(created.search(s) for s in earlier) or any(created.search(s) or given_back.search(s)
                                                            for s in ctx.rest)


_FIX = ("Add the new label or type beside the old one, deploy code that writes the new one, migrate the data, "
        "and retire the old one only when no running version uses it.")


def check(ctx: Ctx) -> Iterator[Hit]:
    b = ctx.body
    if ctx.kind == "AlterEnumStmt" and b.get("oldVal"):
        name = qualified(strings(b.get("typeName")))
        yield Hit(f"RENAME VALUE {b['oldVal']!r} TO {b.get('newVal')!r} of {name} breaks every running application "
                  f"version that still writes or compares {b['oldVal']!r}: its inserts fail with 'invalid input "
                  "value for enum', as a column rename breaks queries.", fix=_FIX)
    elif ctx.kind == "RenameStmt" and b.get("renameType") in ("OBJECT_TYPE", "OBJECT_DOMAIN"):
        items = (b.get("object") or {}).get("List", {}).get("items") or [b.get("object")]
        old = qualified(strings(items)) if items and items[0] else "the type"
        if _replaced_here(ctx, old):
            return
        yield Hit(f"Renaming type {old} to {b.get('newname')} breaks every running application version that names "
                  f"{old} (casts such as ::{old.split('.')[-1]}, function signatures).", fix=_FIX)
    elif ctx.kind == "RenameStmt" and b.get("renameType") == "OBJECT_ATTRIBUTE":
        yield Hit(f"RENAME ATTRIBUTE {b.get('subname')} TO {b.get('newname')} of type "
                  f"{relname(b.get('relation'))} breaks every running application version that reads or builds it.",
                  fix=_FIX)


RULE = Rule(
    id="PS065", name="rename-type-or-value",
    summary="Renaming an enum label, a type or a composite attribute breaks the running application version.",
    lock="", blocks=(), rewrites=False, scans=False, versions="ALTER TYPE ... RENAME VALUE exists from 10.",
    bad="ALTER TYPE order_status RENAME VALUE 'canceled' TO 'cancelled';",
    good="ALTER TYPE order_status ADD VALUE IF NOT EXISTS 'cancelled';",
    safe="Add the new label, switch writers to it, migrate rows, and stop using the old one before removing it.",
    severity="error", kinds=("AlterEnumStmt", "RenameStmt"), check=check, applies_to_new_tables=True,
    category="compatibility",
)
