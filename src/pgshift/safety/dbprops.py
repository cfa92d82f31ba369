"""Database-level properties for a whole-database restore.

pgshift restores into a database it creates itself, so the statements that pg_restore only emits
with ``--create`` are not applied: ``ALTER DATABASE ... SET``, the connection limit,
``ALTER ROLE ... IN DATABASE ... SET``, the database's comment and its GRANT/REVOKE. They are
read from the archive's ``--create`` script, parsed by PostgreSQL's own parser, pointed at the
new database and applied before the swap.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
from pglast import ast, parse_sql, parser
from pglast.enums import ObjectType
from pglast.stream import RawStream

from pgshift.safety.tools import Tool, run_tool

# Statements that can name the database; the parser decides which really do.
# (pg_restore puts a "-- Name: ..." comment block before each entry.)
_CANDIDATE = re.compile(r"^(?:\s*--[^\n]*\n)*\s*(ALTER\s+DATABASE|ALTER\s+ROLE|COMMENT\s+ON\s+DATABASE|GRANT|REVOKE)\b",
                        re.I)


def archived_properties(dump: Path, tool: Tool, database: str) -> list[ast.Node]:
    """The archive's database-level statements for ``database`` (the owner and CREATE excepted)."""
    script = run_tool([str(tool.path), "--create", "--schema-only", "--file=-", str(dump)], {},
                      what="reading the database's own settings from the archive")
    sql_text = "\n".join(line for line in script.splitlines() if not line.startswith("\\"))
    found: list[ast.Node] = []
    for piece in parser.split(sql_text, with_parser=False):
        if _CANDIDATE.match(piece):
            found.extend(s for raw in parse_sql(piece) if (s := _about(raw.stmt, database)) is not None)
    return found


def _about(stmt: Any, database: str) -> ast.Node | None:
    """``stmt`` if it sets a property of ``database`` (keeping only what a restore should carry)."""
    if isinstance(stmt, ast.AlterDatabaseSetStmt) and stmt.dbname == database:
        return stmt
    if isinstance(stmt, ast.AlterDatabaseStmt) and stmt.dbname == database:
        # ALLOW_CONNECTIONS and IS_TEMPLATE belong to the live database's life cycle, not its data.
        stmt.options = tuple(o for o in stmt.options or () if o.defname == "connection_limit")
        return stmt if stmt.options else None
    if isinstance(stmt, ast.AlterRoleSetStmt) and stmt.database == database:
        return stmt
    if isinstance(stmt, ast.CommentStmt) and stmt.objtype == ObjectType.OBJECT_DATABASE:
        return stmt if getattr(stmt.object, "sval", None) == database else None
    if isinstance(stmt, ast.GrantStmt) and stmt.objtype == ObjectType.OBJECT_DATABASE:
        names = [getattr(o, "sval", None) for o in stmt.objects or ()]
        return stmt if names == [database] else None
    return None


def retarget(stmt: ast.Node, database: str) -> str:
    """The statement's SQL, naming ``database`` instead of the one it was dumped from."""
    if isinstance(stmt, ast.AlterDatabaseSetStmt | ast.AlterDatabaseStmt):
        stmt.dbname = database
    elif isinstance(stmt, ast.AlterRoleSetStmt):
        stmt.database = database
    elif isinstance(stmt, ast.CommentStmt):
        stmt.object = ast.String(sval=database)
    elif isinstance(stmt, ast.GrantStmt):
        stmt.objects = (ast.String(sval=database),)
    return str(RawStream()(stmt))


def apply_properties(conn: psycopg.Connection[Any], statements: list[ast.Node], database: str) -> list[str]:
    """Apply the statements to ``database``; the SQL that ran."""
    done: list[str] = []
    for stmt in statements:
        text = retarget(stmt, database)
        conn.execute(text.encode())  # the deparser's own quoting; no parameters to bind
        done.append(text)
    return done
