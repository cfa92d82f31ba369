"""The one parse tree pgshift reads: libpg_query's JSON form (``pglast.parser.parse_sql_json``).

The JSON form is about three times faster to build than pglast's Python AST objects, which matters
when a CI job lints tens of thousands of statements. A node is ``{"Kind": {...}}``; fields left at
their default (false, 0, empty) are absent, and a field typed as a RangeVar holds its fields
without the ``{"RangeVar": ...}`` wrapper.

:func:`parse` is the entry point for a text; the linter's batch parser (``pgshift.lint.engine``)
parses many statements at once with :func:`parse_json` and decodes them with :func:`loads`. Only code
that writes SQL back from a tree (``pgshift.safety.dbprops``, ``pgshift.ops``) uses pglast's AST
objects instead, for its deparser; splitting (``pgshift.migrations.splitter``) builds no tree.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pglast import parser
from pglast.parser import ParseError as ParseError  # what parse raises, importable from here

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; this keeps a broken install working
    orjson = None  # type: ignore[assignment]

Node = dict[str, Any]


def loads(text: str | bytes) -> Any:
    """orjson decodes a 50k-statement tree about 1.4x faster than the standard library, when installed."""
    return orjson.loads(text) if orjson is not None else json.loads(text)


def parse_json(sql: str) -> str:
    """The undecoded tree of ``sql`` (libpg_query runs without the GIL: a helper thread can build it)."""
    return parser.parse_sql_json(sql)


def parse(sql: str) -> list[Node]:
    """The statement nodes of ``sql``, in order. ParseError when it does not parse."""
    return [item["stmt"] for item in loads(parse_json(sql)).get("stmts", ())]


def parse_one(sql: str) -> Node | None:
    """The node of a text holding one statement; None for none or several. ParseError as :func:`parse`."""
    stmts = parse(sql)
    return stmts[0] if len(stmts) == 1 else None


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


def cmds(stmt_body: Node) -> list[Node]:
    return [c["AlterTableCmd"] for c in stmt_body.get("cmds") or () if "AlterTableCmd" in c]


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
