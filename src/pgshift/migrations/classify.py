"""What kind of statement is this? Decided from pglast's AST, never from regular expressions."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pglast import ast, parser
from pglast.enums import AlterTableType


@dataclass(frozen=True)
class IndexTarget:
    """The index a CONCURRENTLY statement creates or drops (name may be None when unnamed)."""

    schema: str | None
    name: str | None
    table_schema: str | None
    table: str | None


@lru_cache(maxsize=4096)
def parse_one(sql: str) -> ast.Node | None:
    stmts = parser.parse_sql(sql)
    return stmts[0].stmt if stmts else None


def _has_concurrently_option(params: tuple[ast.Node, ...] | None) -> bool:
    return any(isinstance(p, ast.DefElem) and p.defname == "concurrently" for p in params or ())


def autocommit_reason(sql: str, server_major: int) -> str | None:
    """Why ``sql`` cannot run inside a transaction block on this server, or None if it can."""
    node = parse_one(sql)
    if isinstance(node, ast.IndexStmt) and node.concurrent:
        return "CREATE INDEX CONCURRENTLY"
    if isinstance(node, ast.DropStmt) and node.concurrent:
        return "DROP INDEX CONCURRENTLY"
    if isinstance(node, ast.ReindexStmt) and _has_concurrently_option(node.params):
        return "REINDEX CONCURRENTLY"
    if isinstance(node, ast.VacuumStmt) and node.is_vacuumcmd:
        return "VACUUM"
    if isinstance(node, ast.AlterSystemStmt):
        return "ALTER SYSTEM"
    if isinstance(node, (ast.CreatedbStmt, ast.DropdbStmt, ast.CreateTableSpaceStmt, ast.DropTableSpaceStmt)):
        return type(node).__name__
    if isinstance(node, ast.AlterEnumStmt) and node.newVal is not None and server_major < 12:
        return "ALTER TYPE ... ADD VALUE before PostgreSQL 12"
    if isinstance(node, ast.AlterTableStmt):
        for cmd in node.cmds or ():
            if (
                isinstance(cmd, ast.AlterTableCmd)
                and cmd.subtype == AlterTableType.AT_DetachPartition
                and isinstance(cmd.def_, ast.PartitionCmd)
                and cmd.def_.concurrent
            ):
                return "ALTER TABLE ... DETACH PARTITION CONCURRENTLY"
    return None


def transaction_control(sql: str) -> str | None:
    """'begin', 'commit' or 'rollback' for a transaction-control statement, else None."""
    node = parse_one(sql)
    if not isinstance(node, ast.TransactionStmt):
        return None
    kind = getattr(node.kind, "name", str(node.kind))
    if kind in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
        return "begin"
    if kind == "TRANS_STMT_COMMIT":
        return "commit"
    return "rollback"


def concurrent_index(sql: str) -> IndexTarget | None:
    """The index named by CREATE INDEX CONCURRENTLY / DROP INDEX CONCURRENTLY."""
    node = parse_one(sql)
    if isinstance(node, ast.IndexStmt) and node.concurrent:
        rel = node.relation
        if rel is None:
            return IndexTarget(None, node.idxname, None, None)
        return IndexTarget(rel.schemaname, node.idxname, rel.schemaname, rel.relname)
    if isinstance(node, ast.DropStmt) and node.concurrent and node.objects:
        names = [s.sval for s in node.objects[0] if isinstance(s, ast.String)]
        schema = names[-2] if len(names) > 1 else None
        return IndexTarget(schema, names[-1] if names else None, None, None)
    return None
