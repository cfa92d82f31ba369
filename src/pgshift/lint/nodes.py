"""The rules' helpers over the parse tree (``pgshift.migrations.tree``, whose helpers are
importable from here too): types, function volatility, quoting."""

from __future__ import annotations

import re
from typing import Any

from pgshift.migrations.tree import Node as Node
from pgshift.migrations.tree import body as body
from pgshift.migrations.tree import cmds as cmds
from pgshift.migrations.tree import has_option as has_option
from pgshift.migrations.tree import kind as kind
from pgshift.migrations.tree import qualified as qualified
from pgshift.migrations.tree import relname as relname
from pgshift.migrations.tree import strings as strings
from pgshift.migrations.tree import walk as walk

# Functions whose result differs per row: a column default using one forces a table rewrite.
VOLATILE_FUNCTIONS = frozenset({
    "random", "clock_timestamp", "timeofday", "gen_random_uuid", "uuid_generate_v1",
    "uuid_generate_v1mc", "uuid_generate_v4", "uuidv4", "uuidv7", "nextval", "setseed",
    "txid_current", "pg_current_xact_id", "gen_random_bytes", "random_normal",
})
# Stable or immutable functions often used in defaults: evaluated once, no rewrite (PG 11+).
KNOWN_STABLE = frozenset({
    "now", "transaction_timestamp", "statement_timestamp", "current_setting", "lower", "upper",
    "make_interval", "jsonb_build_object", "json_build_object", "jsonb_build_array", "to_jsonb",
    "array_fill", "concat", "left", "right", "substr", "length", "coalesce", "abs", "round",
    "date_trunc", "timezone", "to_timestamp", "to_date", "md5", "replace", "btrim", "trim",
})
_SIMPLE_IDENT = re.compile(r"^[a-z_][a-z0-9_$]*$")


def type_of(type_name: Node | None) -> tuple[str, tuple[int, ...], bool]:
    """(base type name without pg_catalog, integer typmods, is_array), cached in the node."""
    if not type_name:
        return "", (), False
    cached = type_name.get("_pgshift_type")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    type_name["_pgshift_type"] = result = _type_of(type_name)
    return result


def _type_of(type_name: Node) -> tuple[str, tuple[int, ...], bool]:
    names = [n for n in strings(type_name.get("names")) if n != "pg_catalog"]
    mods: list[int] = []
    for mod in type_name.get("typmods") or ():
        const = mod.get("A_Const", {})
        if "ival" in const:
            mods.append(int(const["ival"].get("ival", 0)))
    return ".".join(names), tuple(mods), bool(type_name.get("arrayBounds"))


def func_names(expr: Any) -> list[str]:
    names: list[str] = []
    for item in walk(expr):
        call = item.get("FuncCall")
        if isinstance(call, dict):
            parts = strings(call.get("funcname"))
            if parts:
                names.append(parts[-1].lower())
    return names


def volatility(expr: Any) -> str:
    """'volatile', 'unknown' (a function we cannot classify) or 'stable'."""
    verdict = "stable"
    for name in func_names(expr):
        if name in VOLATILE_FUNCTIONS:
            return "volatile"
        if name not in KNOWN_STABLE:
            verdict = "unknown"
    return verdict


def column_constraints(coldef: Node) -> tuple[Node, ...]:
    """The Constraint bodies of a ColumnDef, cached in the node (several rules and the schema model ask;
    a tuple, which walk() does not descend into, so no node is seen twice)."""
    cached = coldef.get("_pgshift_constraints")
    if cached is None:
        cached = coldef["_pgshift_constraints"] = tuple(
            c["Constraint"] for c in coldef.get("constraints") or () if "Constraint" in c)
    return cached


def quote_ident(name: str) -> str:
    return name if _SIMPLE_IDENT.match(name) else '"' + name.replace('"', '""') + '"'


def quote_qualified(name: str) -> str:
    return ".".join(quote_ident(p) for p in name.split("."))
