"""The SQL statements inside PL/pgSQL code a migration runs: a ``DO`` block's body, or the body of a
function or procedure the migration creates and then calls.

pglast parses PL/pgSQL from a function definition, so a DO body is wrapped in one. Each embedded
statement (plain SQL, PERFORM, and EXECUTE of a constant string) becomes a statement of its own,
with its line mapped back to the file, for the rules to judge like any other. EXECUTE of a string
built at run time cannot be analysed; it is reported as such (rule PS063).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pglast import parser

from pgshift.lint.nodes import strings
from pgshift.migrations.model import Statement

Node = dict[str, Any]
_QUOTE = "$pgshift_plpgsql_body$"
# statement kind -> the key of its SQL text: plain SQL, and PERFORM (a SELECT whose rows are dropped)
_PLAIN = {"PLpgSQL_stmt_execsql": "sqlstmt", "PLpgSQL_stmt_perform": "expr"}
_CONSTANT = re.compile(r"^\s*'((?:[^']|'')*)'\s*$", re.S)


@dataclass(frozen=True)
class Embedded:
    sql: str
    line: int  # 1-based line within the body
    dynamic: bool = False  # EXECUTE of text built at run time: not analysable


def _options(items: list[Node] | None) -> dict[str, Node]:
    found: dict[str, Node] = {}
    for item in items or []:
        elem = item.get("DefElem", {})
        if elem.get("defname"):
            found[str(elem["defname"])] = elem.get("arg") or {}
    return found


def do_body(body: Node) -> str | None:
    """The PL/pgSQL source of a DoStmt, or None for another language."""
    args = _options(body.get("args"))
    language = strings([args["language"]])[0].lower() if "language" in args else "plpgsql"
    text = args.get("as", {}).get("String", {}).get("sval")
    return str(text) if language == "plpgsql" and isinstance(text, str) else None


def function_body(body: Node) -> tuple[str, str] | None:
    """(name, PL/pgSQL source) of a CreateFunctionStmt in PL/pgSQL, or None."""
    options = _options(body.get("options"))
    language = strings([options["language"]])[0].lower() if "language" in options else ""
    source = options.get("as", {})
    parts = strings(source.get("List", {}).get("items")) if "List" in source else strings([source]) if source else []
    names = strings(body.get("funcname"))
    if language != "plpgsql" or not parts or not names:
        return None
    return names[-1].lower(), parts[0]


def embedded(source: str) -> list[Embedded] | None:
    """The statements of a PL/pgSQL body, in order; None when it does not parse."""
    wrapped = f"CREATE FUNCTION pg_temp.pgshift_body() RETURNS void LANGUAGE plpgsql AS {_QUOTE}{source}{_QUOTE}"
    try:
        tree = json.loads(parser.parse_plpgsql_json(wrapped))
    except Exception:  # pglast raises its own ParseError; a body PostgreSQL would refuse is not ours to judge
        return None
    found: list[Embedded] = []
    _walk(tree, found)
    return found


def _query(node: Node) -> str | None:
    query = node.get("PLpgSQL_expr", {}).get("query")
    return str(query) if isinstance(query, str) else None


def _walk(node: Any, found: list[Embedded]) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, found)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        plain = _PLAIN.get(key)
        if plain is not None and (query := _query(value.get(plain, {}))):
            found.append(Embedded(query, int(value.get("lineno", 1))))
        elif key == "PLpgSQL_stmt_dynexecute" and (query := _query(value.get("query", {}))) is not None:
            constant = _CONSTANT.match(query)
            line = int(value.get("lineno", 1))
            found.append(Embedded(constant.group(1).replace("''", "'"), line) if constant
                         else Embedded(query, line, dynamic=True))
        _walk(value, found)


def statements_in(outer: Statement, source: str, items: list[Embedded]) -> list[Statement]:
    """The embedded statements as statements of ``outer``'s file, each on its own line there."""
    start = outer.sql.find(source)
    base = outer.line + (outer.sql[:start].count("\n") if start >= 0 else 0)
    return [Statement(item.sql, outer.file, base + item.line - 1, 1, outer.index) for item in items
            if not item.dynamic]
