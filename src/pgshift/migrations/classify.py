"""What kind of statement is this? Decided from pglast's AST, never from regular expressions (the first
word only spares the parse of statements, such as INSERTs, that cannot be of a kind asked about)."""

from __future__ import annotations

from dataclasses import dataclass

from pglast import ast, parser
from pglast.enums import AlterTableType

from pgshift.migrations.splitter import first_word


@dataclass(frozen=True)
class IndexTarget:
    """The index a CONCURRENTLY statement creates or drops (name may be None when unnamed)."""

    schema: str | None
    name: str | None
    table_schema: str | None
    table: str | None


# Only statements starting with one of these words can be transaction control or need autocommit:
# any other (INSERT, UPDATE, COPY...: most of a data migration) is classified without a parse.
TRANSACTION_WORDS = frozenset({
    "ABORT", "BEGIN", "COMMIT", "END", "PREPARE", "RELEASE", "ROLLBACK", "SAVEPOINT", "START",
})
_CLASSIFIED_WORDS = TRANSACTION_WORDS | {"ALTER", "CREATE", "DROP", "REINDEX", "VACUUM"}


def may_be_transaction_control(sql: str) -> bool:
    """False when the first word rules out BEGIN / COMMIT / SAVEPOINT ... without a parse."""
    word = first_word(sql)
    return word is None or word in TRANSACTION_WORDS


@dataclass(frozen=True)
class _Facts:
    transaction: str | None
    autocommit: str | None  # on PostgreSQL 12 and later
    autocommit_before_12: str | None
    index: IndexTarget | None


_NOTHING = _Facts(None, None, None, None)
# Small facts, not parse trees, keyed by the statement's own text (shared, not copied).
_FACTS: dict[str, _Facts] = {}
_FACTS_LIMIT = 50_000


def _facts(sql: str) -> _Facts:
    found = _FACTS.get(sql)
    if found is not None:
        return found
    word = first_word(sql)
    if word is not None and word not in _CLASSIFIED_WORDS:
        return _NOTHING
    node = parse_one(sql)
    found = _Facts(_transaction_control(node), _autocommit_reason(node, 12), _autocommit_reason(node, 11),
                   _concurrent_index(node))
    if len(_FACTS) >= _FACTS_LIMIT:
        _FACTS.clear()
    _FACTS[sql] = found
    return found


def parse_one(sql: str) -> ast.Node | None:
    stmts = parser.parse_sql(sql)
    return stmts[0].stmt if len(stmts) == 1 else None


def _has_concurrently_option(params: tuple[ast.Node, ...] | None) -> bool:
    return any(isinstance(p, ast.DefElem) and p.defname == "concurrently" for p in params or ())


def autocommit_reason(sql: str, server_major: int) -> str | None:
    """Why ``sql`` cannot run inside a transaction block on this server, or None if it can."""
    facts = _facts(sql)
    return facts.autocommit if server_major >= 12 else facts.autocommit_before_12


def _autocommit_reason(node: ast.Node | None, server_major: int) -> str | None:
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
    return _facts(sql).transaction


def _transaction_control(node: ast.Node | None) -> str | None:
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
    return _facts(sql).index


def _concurrent_index(node: ast.Node | None) -> IndexTarget | None:
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


_ISOLATION_LEVELS = ("serializable", "repeatable read", "read committed", "read uncommitted")


def transaction_modes(sql: str) -> str | None:
    """The modes of a BEGIN / START TRANSACTION (``ISOLATION LEVEL SERIALIZABLE, READ ONLY``), or None."""
    node = parse_one(sql)
    if not isinstance(node, ast.TransactionStmt):
        return None
    modes: list[str] = []
    for option in node.options or ():
        value = getattr(getattr(option, "arg", None), "val", None)
        level = str(getattr(value, "sval", ""))
        if option.defname == "transaction_isolation" and level in _ISOLATION_LEVELS:
            modes.append(f"ISOLATION LEVEL {level.upper()}")
        elif option.defname == "transaction_read_only":
            modes.append("READ ONLY" if getattr(value, "ival", 0) else "READ WRITE")
        elif option.defname == "transaction_deferrable":
            modes.append("DEFERRABLE" if getattr(value, "ival", 0) else "NOT DEFERRABLE")
    return ", ".join(modes) or None
