"""PostgreSQL table lock levels, what each blocks, and the locks a statement takes."""

from __future__ import annotations

from pgshift.lint.nodes import Node, body, cmds, has_option, kind, relname, strings

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


def stronger(a: str | None, b: str) -> str:
    if a is None:
        return b
    return a if LEVELS.index(a) >= LEVELS.index(b) else b


def describe_blocks(level: str) -> str:
    blocked = BLOCKS.get(level, ())
    if not blocked:
        return "blocks nothing the application does"
    return "blocks " + " and ".join(", ".join(blocked).rsplit(", ", 1))


def _alter_table_locks(stmt: Node) -> list[tuple[str, str]]:
    table = relname(stmt.get("relation"))
    level: str | None = None
    extra: list[tuple[str, str]] = []
    for cmd in cmds(stmt):
        sub = cmd.get("subtype", "")
        mode = _WEAK_SUBTYPES.get(sub, "ACCESS EXCLUSIVE")
        definition = cmd.get("def") or {}
        if sub == "AT_AddConstraint" and "Constraint" in definition:
            con = definition["Constraint"]
            if con.get("contype") == "CONSTR_FOREIGN":
                mode = "SHARE ROW EXCLUSIVE"
                extra.append((relname(con.get("pktable")), "SHARE ROW EXCLUSIVE"))
        if sub == "AT_DetachPartition" and definition.get("PartitionCmd", {}).get("concurrent"):
            mode = "SHARE UPDATE EXCLUSIVE"
        if sub in ("AT_AttachPartition", "AT_DetachPartition"):
            part = relname(definition.get("PartitionCmd", {}).get("name"))
            extra.append((part, "ACCESS EXCLUSIVE"))
        level = stronger(level, mode)
    return ([(table, level)] if level else []) + extra


def statement_locks(node: Node, index_tables: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(table, lock level) pairs the statement holds until its transaction ends."""
    k = kind(node)
    b = body(node)
    index_tables = index_tables or {}
    if k == "AlterTableStmt" and b.get("objtype", "OBJECT_TABLE") in ("OBJECT_TABLE", "OBJECT_MATVIEW"):
        return _alter_table_locks(b)
    if k == "IndexStmt":
        return [(relname(b.get("relation")), "SHARE UPDATE EXCLUSIVE" if b.get("concurrent") else "SHARE")]
    if k == "CreateTrigStmt":
        return [(relname(b.get("relation")), "SHARE ROW EXCLUSIVE")]
    if k in ("UpdateStmt", "DeleteStmt", "InsertStmt", "MergeStmt"):
        return [(relname(b.get("relation")), "ROW EXCLUSIVE")]
    if k == "TruncateStmt":
        return [(relname(r), "ACCESS EXCLUSIVE") for r in b.get("relations") or ()]
    if k == "LockStmt":
        mode = _LOCK_MODES.get(int(b.get("mode", 8)), "ACCESS EXCLUSIVE")
        return [(relname(r), mode) for r in b.get("relations") or ()]
    if k == "RenameStmt" and b.get("relation"):
        return [(relname(b.get("relation")), "ACCESS EXCLUSIVE")]
    if k == "ClusterStmt" and b.get("relation"):
        return [(relname(b.get("relation")), "ACCESS EXCLUSIVE")]
    if k == "RefreshMatViewStmt":
        return [(relname(b.get("relation")), "EXCLUSIVE" if b.get("concurrent") else "ACCESS EXCLUSIVE")]
    if k == "VacuumStmt" and has_option(b.get("options"), "full"):
        return [(relname(r.get("VacuumRelation", {}).get("relation")), "ACCESS EXCLUSIVE")
                for r in b.get("rels") or ()]
    if k == "DropStmt" and b.get("removeType") in ("OBJECT_TABLE", "OBJECT_INDEX", "OBJECT_MATVIEW"):
        locks = []
        for obj in b.get("objects") or ():
            name = ".".join(strings(obj.get("List", {}).get("items")))
            if b.get("removeType") == "OBJECT_INDEX":
                if b.get("concurrent"):
                    continue
                name = index_tables.get(name, name)
            locks.append((name, "ACCESS EXCLUSIVE"))
        return locks
    if k == "ReindexStmt" and b.get("relation") and not has_option(b.get("params"), "concurrently"):
        name = relname(b.get("relation"))
        return [(index_tables.get(name, name), "SHARE" if b.get("kind") != "REINDEX_OBJECT_INDEX"
                 else "ACCESS EXCLUSIVE")]
    return []
