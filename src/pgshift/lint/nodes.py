"""Helpers over libpg_query's JSON parse tree (``pglast.parser.parse_sql_json``).

The JSON form is about three times faster to build than pglast's Python AST objects, which
matters when a CI job lints tens of thousands of statements. A node is ``{"Kind": {...}}``;
fields left at their default (false, 0, empty) are absent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

Node = dict[str, Any]

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


def kind(node: Node) -> str:
    return next(iter(node))


def body(node: Node) -> Node:
    value: Node = node[kind(node)]
    return value


def strings(items: list[Node] | None) -> list[str]:
    """``[{"String": {"sval": "a"}}, ...]`` -> ``["a", ...]``."""
    return [i["String"].get("sval", "") for i in items or () if "String" in i]


def relname(rangevar: Node | None) -> str:
    """Qualified name of a RangeVar; the ``public`` schema is left off so names compare."""
    if not rangevar:
        return ""
    rv = rangevar.get("RangeVar", rangevar)
    schema = rv.get("schemaname")
    name = str(rv.get("relname", ""))
    return name if not schema or schema == "public" else f"{schema}.{name}"


def qualified(names: list[str]) -> str:
    parts = [n for n in names if n]
    if len(parts) > 1 and parts[0] == "public":
        parts = parts[1:]
    return ".".join(parts)


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


def walk(node: Any) -> Iterator[Node]:
    """Every dict node under ``node`` (depth first), including ``node`` itself."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


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


def cmds(stmt_body: Node) -> list[Node]:
    return [c["AlterTableCmd"] for c in stmt_body.get("cmds") or () if "AlterTableCmd" in c]


def column_constraints(coldef: Node) -> list[Node]:
    return [c["Constraint"] for c in coldef.get("constraints") or () if "Constraint" in c]


def has_option(options: list[Node] | None, name: str) -> bool:
    """Whether a DefElem list (VACUUM (FULL), REINDEX (CONCURRENTLY)) holds ``name``, not false."""
    for opt in options or ():
        elem = opt.get("DefElem", {})
        if elem.get("defname") == name:
            arg = elem.get("arg")
            if arg and "Boolean" in arg and not arg["Boolean"].get("boolval"):
                return False
            return not (arg and "String" in arg and arg["String"].get("sval", "").lower() in ("false", "off", "0"))
    return False


def quote_ident(name: str) -> str:
    return name if _SIMPLE_IDENT.match(name) else '"' + name.replace('"', '""') + '"'


def quote_qualified(name: str) -> str:
    return ".".join(quote_ident(p) for p in name.split("."))
