"""What one statement is and does, decided once from one parse: :class:`StatementFacts`.

Its kind, the relations it names, changes, rewrites and scans, the lock each relation gets, whether
it can run inside a transaction block (by server major), and whether it is transaction control. The
runner (through ``pgshift.migrations.classify``), the lint rules, ``pgshift check`` and ``pgshift
rehearse`` all read these facts; the table of lock levels and what each blocks lives here too.

Decided from the parse tree of ``pgshift.migrations.tree``, keeping only the facts. An ``INSERT ...
VALUES`` (most of a data migration, and its largest statements) is not parsed whole: only its head up
to VALUES is, completed with a one-row VALUES list, and the rows are screened by one regular
expression for the only words that can bring in another table (a subquery's SELECT or TABLE). The
statement is parsed whole whenever that shortcut cannot vouch for its answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pgshift.migrations import tree
from pgshift.migrations.splitter import first_word
from pgshift.migrations.tree import Node, body, cmds, has_option, kind, strings

TableName = tuple[str | None, str]  # (schema or None, name)

# -- lock levels ---------------------------------------------------------------------------
LEVELS = (
    "ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE",
    "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE",
)
# Traffic an application sees blocked: reads (SELECT), writes (INSERT/UPDATE/DELETE), ddl
# (other schema changes, VACUUM, CREATE INDEX).
BLOCKS: dict[str, tuple[str, ...]] = {
    "ACCESS SHARE": (),
    "ROW SHARE": (),
    "ROW EXCLUSIVE": (),
    "SHARE UPDATE EXCLUSIVE": ("ddl",),
    "SHARE": ("writes", "ddl"),
    "SHARE ROW EXCLUSIVE": ("writes", "ddl"),
    "EXCLUSIVE": ("writes", "ddl"),
    "ACCESS EXCLUSIVE": ("reads", "writes", "ddl"),
}
_LOCK_MODES = {1: "ACCESS SHARE", 2: "ROW SHARE", 3: "ROW EXCLUSIVE", 4: "SHARE UPDATE EXCLUSIVE",
               5: "SHARE", 6: "SHARE ROW EXCLUSIVE", 7: "EXCLUSIVE", 8: "ACCESS EXCLUSIVE"}
# ALTER TABLE subcommands taking less than ACCESS EXCLUSIVE (every other one takes it).
_WEAK_SUBTYPES = {
    "AT_SetStatistics": "SHARE UPDATE EXCLUSIVE",
    "AT_ValidateConstraint": "SHARE UPDATE EXCLUSIVE",
    "AT_ClusterOn": "SHARE UPDATE EXCLUSIVE",
    "AT_DropCluster": "SHARE UPDATE EXCLUSIVE",
    "AT_AttachPartition": "SHARE UPDATE EXCLUSIVE",
    "AT_EnableTrig": "SHARE ROW EXCLUSIVE", "AT_DisableTrig": "SHARE ROW EXCLUSIVE",
    "AT_EnableAlwaysTrig": "SHARE ROW EXCLUSIVE", "AT_EnableReplicaTrig": "SHARE ROW EXCLUSIVE",
    "AT_EnableTrigAll": "SHARE ROW EXCLUSIVE", "AT_DisableTrigAll": "SHARE ROW EXCLUSIVE",
    "AT_EnableTrigUser": "SHARE ROW EXCLUSIVE", "AT_DisableTrigUser": "SHARE ROW EXCLUSIVE",
}
# ALTER TABLE subcommands that rewrite the table (ALTER COLUMN TYPE: unless binary coercible,
# which only a schema can tell; the linter's PS010 does).
_REWRITING = frozenset({"AT_AlterColumnType", "AT_SetTableSpace", "AT_SetLogged", "AT_SetUnLogged"})
# ... and those that read it whole to check it while holding their lock.
_SCANNING = frozenset({"AT_SetNotNull", "AT_ValidateConstraint", "AT_AttachPartition"})


def stronger(a: str | None, b: str) -> str:
    if a is None:
        return b
    return a if LEVELS.index(a) >= LEVELS.index(b) else b


def describe_blocks(level: str) -> str:
    blocked = BLOCKS.get(level, ())
    if not blocked:
        return "blocks nothing the application does"
    return "blocks " + " and ".join(", ".join(blocked).rsplit(", ", 1))


@dataclass(frozen=True)
class Lock:
    """A lock a statement holds until its transaction ends. ``on_index``: ``relation`` is an index
    and the lock is on its table (which only a schema can name)."""

    relation: TableName
    level: str
    on_index: bool = False


@dataclass(frozen=True)
class IndexTarget:
    """The index a CONCURRENTLY statement creates or drops (name may be None when unnamed)."""

    schema: str | None
    name: str | None
    table_schema: str | None
    table: str | None


_UNSET: Any = object()


class StatementFacts:
    """One statement, as every part of pgshift sees it. ``kind`` is the parse-tree node kind
    (``"IndexStmt"``), ``""`` for a text that does not parse to exactly one statement.

    Each fact is decided from the tree when first asked and then kept: the linter asks one or two
    of them for most statements, so deciding all of them up front was a fifth of its time.
    :meth:`settle` decides the rest and lets go of the tree (for facts kept longer than the tree).
    Read-only, and equal when all facts are.

    - ``relations``: every relation named anywhere (FROM lists, subqueries)
    - ``changed``: its target relation(s), or those VACUUM names
    - ``rewritten``: rewritten or copied while building (index, CLUSTER)
    - ``scanned``: read whole while its lock is held (rewritten ones too)
    - ``bulk_loaded``: filled from a query or a file: INSERT ... SELECT, COPY FROM
    - ``stale_statistics``: tables whose planner statistics it leaves stale: a rewrite that changes
      values or their order (ALTER COLUMN TYPE drops the column's statistics; CLUSTER), an expression
      index (ANALYZE collects its expressions' statistics), a backfill (UPDATE) or a bulk load.
      `migrate` runs ANALYZE on them afterwards.
    - ``locks``; ``transaction``: 'begin', 'commit' or 'rollback' for transaction control; ``modes``
      of a BEGIN ("ISOLATION LEVEL SERIALIZABLE, READ ONLY")
    - ``autocommit``: why it cannot run in a transaction block, PostgreSQL 12 and later;
      ``autocommit_before_12``: ... before 12
    - ``concurrent_index``: the index a CONCURRENTLY statement creates or drops
    - ``destroys``: what it destroys, in words ("table app.users", "column users.email", "the rows of
      users", "schema s"): the data loss backup.policy asks about
    """

    __slots__ = ("_autocommit", "_autocommit_11", "_body", "_bulk_loaded", "_changes", "_concurrent_index",
                 "_destroys", "_kind", "_locks", "_modes", "_node", "_relations", "_stale", "_transaction")

    def __init__(self, node: Node | None = None, *, relations: frozenset[TableName] | None = None) -> None:
        self._kind = kind(node) if node else ""
        self._node = node
        self._body: Node = body(node) if node else {}
        self._relations = _UNSET if relations is None else relations
        self._changes: Any = _UNSET
        self._bulk_loaded: Any = _UNSET
        self._stale: Any = _UNSET
        self._locks: Any = _UNSET
        self._autocommit: Any = _UNSET
        self._autocommit_11: Any = _UNSET
        self._concurrent_index: Any = _UNSET
        self._destroys: Any = _UNSET
        self._transaction: Any = _UNSET
        self._modes: Any = _UNSET

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def relations(self) -> frozenset[TableName]:
        if self._relations is _UNSET:
            self._relations = _relations(self._node) if self._node else frozenset()
        return self._relations

    def _changed(self) -> tuple[frozenset[TableName], frozenset[TableName], frozenset[TableName]]:
        if self._changes is _UNSET:
            self._changes = tuple(frozenset(names) for names in _changed(self._kind, self._body))
        return self._changes  # type: ignore[no-any-return]

    @property
    def changed(self) -> frozenset[TableName]:
        return self._changed()[0]

    @property
    def rewritten(self) -> frozenset[TableName]:
        return self._changed()[1]

    @property
    def scanned(self) -> frozenset[TableName]:
        return self._changed()[2]

    @property
    def bulk_loaded(self) -> frozenset[TableName]:
        if self._bulk_loaded is _UNSET:
            self._bulk_loaded = frozenset(_bulk_loaded(self._kind, self._body))
        return self._bulk_loaded  # type: ignore[no-any-return]

    @property
    def stale_statistics(self) -> frozenset[TableName]:
        if self._stale is _UNSET:
            self._stale = _stale_statistics(self._kind, self._body, self.changed, self.bulk_loaded)
        return self._stale  # type: ignore[no-any-return]

    @property
    def locks(self) -> tuple[Lock, ...]:
        if self._locks is _UNSET:
            self._locks = tuple(_locks_of(self._kind, self._body)) if self._node else ()
        return self._locks  # type: ignore[no-any-return]

    @property
    def transaction(self) -> str | None:
        if self._transaction is _UNSET:
            self._transaction = _transaction(self._kind, self._body)
        return self._transaction  # type: ignore[no-any-return]

    @property
    def modes(self) -> str | None:
        if self._modes is _UNSET:
            self._modes = _modes(self._body) if self._kind == "TransactionStmt" else None
        return self._modes  # type: ignore[no-any-return]

    @property
    def autocommit(self) -> str | None:
        if self._autocommit is _UNSET:
            self._autocommit = _autocommit(self._kind, self._body, 12)
        return self._autocommit  # type: ignore[no-any-return]

    @property
    def autocommit_before_12(self) -> str | None:
        if self._autocommit_11 is _UNSET:
            self._autocommit_11 = _autocommit(self._kind, self._body, 11)
        return self._autocommit_11  # type: ignore[no-any-return]

    @property
    def concurrent_index(self) -> IndexTarget | None:
        if self._concurrent_index is _UNSET:
            self._concurrent_index = _concurrent_index(self._kind, self._body)
        return self._concurrent_index  # type: ignore[no-any-return]

    @property
    def destroys(self) -> tuple[str, ...]:
        if self._destroys is _UNSET:
            self._destroys = _destroys(self._kind, self._body)
        return self._destroys  # type: ignore[no-any-return]

    def autocommit_reason(self, server_major: int) -> str | None:
        """Why it cannot run inside a transaction block on this server major, or None if it can."""
        return self.autocommit if server_major >= 12 else self.autocommit_before_12

    def settle(self) -> StatementFacts:
        """Decide every fact now and drop the tree; ``self``."""
        if self._node is not None:
            self._values()
            self._node, self._body = None, {}
        return self

    def _values(self) -> tuple[Any, ...]:
        return (self.kind, self.relations, self.changed, self.rewritten, self.scanned, self.bulk_loaded,
                self.stale_statistics, self.locks, self.transaction, self.modes, self.autocommit,
                self.autocommit_before_12, self.concurrent_index, self.destroys)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StatementFacts) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        names = ("kind", "relations", "changed", "rewritten", "scanned", "bulk_loaded", "stale_statistics",
                 "locks", "transaction", "modes", "autocommit", "autocommit_before_12", "concurrent_index",
                 "destroys")
        return "StatementFacts(" + ", ".join(f"{n}={v!r}" for n, v in zip(names, self._values(), strict=True)) + ")"


NOTHING = StatementFacts()


# -- from a tree ---------------------------------------------------------------------------
def _name(rangevar: Node | None) -> TableName | None:
    if not rangevar:
        return None
    rv = rangevar.get("RangeVar", rangevar)
    return (rv.get("schemaname") or None, str(rv.get("relname", "")))


def _listed(obj: Node) -> TableName:
    """The (schema, name) of a DROP's object, ``[{"String": ...}, ...]``."""
    names = [n for n in strings(obj.get("List", {}).get("items")) if n]
    return (names[-2] if len(names) > 1 else None, names[-1] if names else "")


# Locks are values, and the same few (table, level) pairs come back statement after statement.
_lock = lru_cache(maxsize=4096)(Lock)


def _alter_table_locks(b: Node, table: TableName | None) -> list[Lock]:
    level: str | None = None
    extra: list[Lock] = []
    for cmd in cmds(b):
        sub = cmd.get("subtype", "")
        mode = _WEAK_SUBTYPES.get(sub, "ACCESS EXCLUSIVE")
        definition = cmd.get("def") or {}
        if sub == "AT_AddConstraint" and "Constraint" in definition:
            con = definition["Constraint"]
            if con.get("contype") == "CONSTR_FOREIGN":
                mode = "SHARE ROW EXCLUSIVE"
                extra.append(_lock(_name(con.get("pktable")) or (None, ""), "SHARE ROW EXCLUSIVE"))
        partition = definition.get("PartitionCmd", {})
        if sub == "AT_DetachPartition" and partition.get("concurrent"):
            mode = "SHARE UPDATE EXCLUSIVE"
        if sub in ("AT_AttachPartition", "AT_DetachPartition"):
            extra.append(_lock(_name(partition.get("name")) or (None, ""), "ACCESS EXCLUSIVE"))
        level = stronger(level, mode)
    return ([_lock(table, level)] if level and table else []) + extra


def locks_of(node: Node) -> list[Lock]:
    """The table locks ``node`` holds until its transaction ends (one table per lock)."""
    return _locks_of(kind(node), body(node))


def _locks_of(k: str, b: Node) -> list[Lock]:
    target = _name(b.get("relation"))
    if k == "AlterTableStmt" and b.get("objtype", "OBJECT_TABLE") in ("OBJECT_TABLE", "OBJECT_MATVIEW"):
        return _alter_table_locks(b, target)
    if k == "IndexStmt" and target:
        return [_lock(target, "SHARE UPDATE EXCLUSIVE" if b.get("concurrent") else "SHARE")]
    if k == "CreateTrigStmt" and target:
        return [_lock(target, "SHARE ROW EXCLUSIVE")]
    if k in ("UpdateStmt", "DeleteStmt", "InsertStmt", "MergeStmt") and target:
        return [_lock(target, "ROW EXCLUSIVE")]
    if k == "TruncateStmt":
        return [_lock(n, "ACCESS EXCLUSIVE") for r in b.get("relations") or () if (n := _name(r))]
    if k == "LockStmt":
        mode = _LOCK_MODES.get(int(b.get("mode", 8)), "ACCESS EXCLUSIVE")
        return [_lock(n, mode) for r in b.get("relations") or () if (n := _name(r))]
    if k in ("RenameStmt", "ClusterStmt") and target:
        return [_lock(target, "ACCESS EXCLUSIVE")]
    if k == "RefreshMatViewStmt" and target:
        return [_lock(target, "EXCLUSIVE" if b.get("concurrent") else "ACCESS EXCLUSIVE")]
    if k == "VacuumStmt" and has_option(b.get("options"), "full"):
        return [_lock(n, "ACCESS EXCLUSIVE") for n in _vacuumed(b)]
    if k == "DropStmt" and b.get("removeType") in ("OBJECT_TABLE", "OBJECT_INDEX", "OBJECT_MATVIEW"):
        on_index = b.get("removeType") == "OBJECT_INDEX"
        if on_index and b.get("concurrent"):
            return []
        return [_lock(_listed(obj), "ACCESS EXCLUSIVE", on_index) for obj in b.get("objects") or ()]
    if k == "ReindexStmt" and target and not has_option(b.get("params"), "concurrently"):
        on_index = b.get("kind") == "REINDEX_OBJECT_INDEX"
        return [_lock(target, "ACCESS EXCLUSIVE" if on_index else "SHARE", on_index)]
    return []


def _vacuumed(b: Node) -> list[TableName]:
    return [n for r in b.get("rels") or () if (n := _name(r.get("VacuumRelation", {}).get("relation")))]


def _autocommit(k: str, b: Node, server_major: int) -> str | None:
    if k == "IndexStmt" and b.get("concurrent"):
        return "CREATE INDEX CONCURRENTLY"
    if k == "DropStmt" and b.get("concurrent"):
        return "DROP INDEX CONCURRENTLY"
    if k == "ReindexStmt" and has_option(b.get("params"), "concurrently"):
        return "REINDEX CONCURRENTLY"
    if k == "VacuumStmt" and b.get("is_vacuumcmd"):
        return "VACUUM"
    if k in _OUTSIDE_TRANSACTIONS:
        return _OUTSIDE_TRANSACTIONS[k]
    if k == "AlterEnumStmt" and b.get("newVal") and server_major < 12:
        return "ALTER TYPE ... ADD VALUE before PostgreSQL 12"
    if k == "AlterTableStmt":
        for cmd in cmds(b):
            if cmd.get("subtype") == "AT_DetachPartition" and (cmd.get("def") or {}).get(
                    "PartitionCmd", {}).get("concurrent"):
                return "ALTER TABLE ... DETACH PARTITION CONCURRENTLY"
    return None


_OUTSIDE_TRANSACTIONS = {
    "AlterSystemStmt": "ALTER SYSTEM", "CreatedbStmt": "CREATE DATABASE", "DropdbStmt": "DROP DATABASE",
    "CreateTableSpaceStmt": "CREATE TABLESPACE", "DropTableSpaceStmt": "DROP TABLESPACE",
}


def _transaction(k: str, b: Node) -> str | None:
    if k != "TransactionStmt":
        return None
    what = b.get("kind", "")
    if what in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
        return "begin"
    return "commit" if what == "TRANS_STMT_COMMIT" else "rollback"


_ISOLATION_LEVELS = ("serializable", "repeatable read", "read committed", "read uncommitted")


def _modes(b: Node) -> str | None:
    modes: list[str] = []
    for option in b.get("options") or ():
        elem = option.get("DefElem", {})
        const = (elem.get("arg") or {}).get("A_Const", {})
        level = str(const.get("sval", {}).get("sval", ""))
        flag = bool(const.get("ival", {}).get("ival", 0))
        name = elem.get("defname")
        if name == "transaction_isolation" and level in _ISOLATION_LEVELS:
            modes.append(f"ISOLATION LEVEL {level.upper()}")
        elif name == "transaction_read_only":
            modes.append("READ ONLY" if flag else "READ WRITE")
        elif name == "transaction_deferrable":
            modes.append("DEFERRABLE" if flag else "NOT DEFERRABLE")
    return ", ".join(modes) or None


def _concurrent_index(k: str, b: Node) -> IndexTarget | None:
    if k == "IndexStmt" and b.get("concurrent"):
        table = _name(b.get("relation"))
        if table is None:
            return IndexTarget(None, b.get("idxname"), None, None)
        return IndexTarget(table[0], b.get("idxname"), table[0], table[1])
    if k == "DropStmt" and b.get("concurrent") and b.get("objects"):
        schema, name = _listed(b["objects"][0])
        return IndexTarget(schema, name or None, None, None)
    return None


def _changed(k: str, b: Node) -> tuple[set[TableName], set[TableName], set[TableName]]:
    """(changed, rewritten, scanned) by a statement."""
    target = _name(b.get("relation"))
    changed = {target} if target else set()
    rewritten: set[TableName] = set()
    scanned: set[TableName] = set()
    if k == "VacuumStmt":
        changed = set(_vacuumed(b))
        if has_option(b.get("options"), "full"):
            rewritten |= changed
    elif k in ("IndexStmt", "ClusterStmt"):
        rewritten |= changed
    elif k == "AlterTableStmt":
        for cmd in cmds(b):
            sub = cmd.get("subtype")
            con = (cmd.get("def") or {}).get("Constraint", {})
            if sub in _REWRITING:
                rewritten |= changed
            elif sub in _SCANNING or (sub == "AT_AddConstraint" and not con.get("skip_validation")
                                      and con.get("contype") in _VALIDATED):
                scanned |= changed
    return changed, rewritten, scanned | rewritten


_DROPPED_KINDS = {"OBJECT_TABLE": "table", "OBJECT_MATVIEW": "materialized view", "OBJECT_SCHEMA": "schema"}


def _destroys(k: str, b: Node) -> tuple[str, ...]:
    if k == "TruncateStmt":
        return tuple(f"the rows of {tree.relname(r)}" for r in b.get("relations") or ())
    if k == "DropStmt" and (what := _DROPPED_KINDS.get(b.get("removeType", ""))):
        names = [tree.strings([o]) if "String" in o else tree.strings(o.get("List", {}).get("items"))
                 for o in b.get("objects") or ()]
        return tuple(f"{what} {tree.qualified(n)}" for n in names)
    if k == "AlterTableStmt":
        table = tree.relname(b.get("relation"))
        return tuple(f"column {table}.{c.get('name')}" for c in cmds(b) if c.get("subtype") == "AT_DropColumn")
    return ()


def _bulk_loaded(k: str, b: Node) -> set[TableName]:
    target = _name(b.get("relation"))
    if target is None:
        return set()
    if k == "InsertStmt":
        select = (b.get("selectStmt") or {}).get("SelectStmt")
        return {target} if select is not None and not select.get("valuesLists") else set()
    return {target} if k == "CopyStmt" and b.get("is_from") else set()


def _stale_statistics(k: str, b: Node, changed: frozenset[TableName], bulk_loaded: frozenset[TableName]
                      ) -> frozenset[TableName]:
    # CLUSTER reorders the rows (their correlation with each index changes); a rewrite that keeps the
    # same rows in the same order (SET TABLESPACE, VACUUM FULL) leaves the statistics true.
    if k in ("UpdateStmt", "ClusterStmt"):
        return changed
    if k == "IndexStmt" and any((p.get("IndexElem") or {}).get("expr") for p in b.get("indexParams") or ()):
        return changed
    if k == "AlterTableStmt" and any(cmd.get("subtype") == "AT_AlterColumnType" for cmd in cmds(b)):
        return changed
    return bulk_loaded


# Constraints ADD CONSTRAINT checks against every row (unless NOT VALID, or USING INDEX for a key).
_VALIDATED = frozenset({"CONSTR_CHECK", "CONSTR_FOREIGN", "CONSTR_PRIMARY", "CONSTR_UNIQUE", "CONSTR_EXCLUSION"})


def _relations(node: Node) -> frozenset[TableName]:
    # Only RangeVars have a relname field in a raw parse tree.
    return frozenset((n.get("schemaname") or None, n["relname"]) for n in tree.walk(node)
                     if isinstance(n.get("relname"), str))


def facts_of(node: Node, *, relations: frozenset[TableName] | None = None) -> StatementFacts:
    """The facts of one statement's tree (``relations``: every relation it names, when known already),
    each decided when first asked; the facts hold the tree until :meth:`StatementFacts.settle`."""
    return StatementFacts(node, relations=relations)


# -- from a text ---------------------------------------------------------------------------
_VALUES = re.compile(r"\bvalues\b", re.I)
# A table can appear in an INSERT's rows (or its ON CONFLICT / RETURNING) only inside a subquery.
_SUBQUERY_WORD = re.compile(r"\b(?:select|table)\b", re.I)
_ONE_ROW = " VALUES (NULL)"


def _insert_head(sql: str) -> tuple[Node, int] | None:
    """The tree of ``INSERT INTO t (cols) VALUES (NULL)`` built from ``sql``'s text before its first
    VALUES, and where the rest starts; None when that is not an INSERT ... VALUES at top level.

    A first VALUES inside a string, quoted name, comment or parentheses leaves that head unterminated
    or unbalanced, so it either fails to parse or does not parse to the one NULL row appended."""
    if first_word(sql) != "INSERT":
        return None
    match = _VALUES.search(sql)
    if match is None:
        return None
    try:
        node = tree.parse_one(sql[:match.start()] + _ONE_ROW)
    except tree.ParseError:  # the whole statement is parsed instead
        return None
    insert = node.get("InsertStmt") if node is not None else None
    if insert is None or not insert.get("relation") or insert.get("withClause"):
        return None
    rows = (insert.get("selectStmt") or {}).get("SelectStmt", {}).get("valuesLists") or []
    items = rows[0].get("List", {}).get("items") or [] if len(rows) == 1 else []
    if len(items) != 1 or not items[0].get("A_Const", {}).get("isnull"):
        return None
    return node, match.end()  # type: ignore[return-value]  # node is not None here


def _may_name_a_table(sql: str, rows_start: int) -> bool:
    rows = sql[rows_start:].lower()  # finding the words in a copy is 15x faster than the regex alone
    return ("select" in rows or "table" in rows) and _SUBQUERY_WORD.search(sql, rows_start) is not None


@lru_cache(maxsize=50_000)  # small facts keyed by the text itself (shared, not copied)
def analyse_all(sql: str) -> tuple[StatementFacts, ...]:
    """The facts of each statement of ``sql`` (one parse, remembered for the same text); none for a
    text that does not parse (lint reports it)."""
    head = _insert_head(sql)
    if head is not None:
        node, rows_start = head
        if not _may_name_a_table(sql, rows_start):
            return (facts_of(node).settle(),)
    try:
        return tuple(facts_of(node).settle() for node in tree.parse(sql))
    except tree.ParseError:
        return ()


def analyse(sql: str) -> StatementFacts:
    """The facts of the one statement ``sql``; :data:`NOTHING` when it does not parse to exactly one."""
    found = analyse_all(sql)
    return found[0] if len(found) == 1 else NOTHING


def changed_tables(sql: str) -> tuple[set[TableName], set[TableName]]:
    """(tables the statement changes: its target relation, or the ones VACUUM names; those of them it
    rewrites or copies while building: ALTER TABLE ... TYPE / SET TABLESPACE / SET [UN]LOGGED,
    CREATE INDEX, CLUSTER, VACUUM FULL)."""
    found = analyse_all(sql)
    return {t for f in found for t in f.changed}, {t for f in found for t in f.rewritten}


def named_tables(sql: str) -> set[TableName]:
    """Every relation the statement names anywhere (targets, FROM lists, subqueries)."""
    return {t for f in analyse_all(sql) for t in f.relations}
