"""The catalog facts an operations migration is planned from, captured before expand starts.

They are stored as JSON in ``ops_state.captured`` so an interrupted expand (or a later contract or
abort) plans the very same steps. ``from_json`` reads every shape pgshift has written, including
older ones without the keys added since (those read as "nothing of that kind").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ColumnFacts:
    name: str
    type: str  # format_type()
    notnull: bool
    default: str | None
    special: bool  # identity or generated: cannot be duplicated
    collate: str | None = None  # "COLLATE schema.name" when not the type's default
    comment: str | None = None
    statistics: int | None = None  # per-column statistics target, when set
    storage: str | None = None  # pg_attribute.attstorage, when not the type's default
    compression: str | None = None  # "pglz" / "lz4", when set


@dataclass(frozen=True)
class Grant:
    grantee: str  # a role name or PUBLIC
    privilege: str
    grantable: bool


@dataclass(frozen=True)
class ColumnGrant:
    grantee: str
    privilege: str
    column: str
    grantable: bool


@dataclass(frozen=True)
class Rights:
    """Who may use a table, and whether row-level security applies: its views must enforce the same."""

    grants: tuple[Grant, ...] = ()
    column_grants: tuple[ColumnGrant, ...] = ()
    rls: bool = False
    force_rls: bool = False
    owner: str | None = None
    runner: str | None = None  # the role pgshift ran as


@dataclass(frozen=True)
class IndexConstraint:
    """The PRIMARY KEY ('p') or UNIQUE ('u') constraint an index backs."""

    name: str
    type: str
    deferrable: bool
    deferred: bool


@dataclass(frozen=True)
class IndexFacts:
    name: str
    definition: str  # pg_get_indexdef
    columns: tuple[str, ...]  # every column it uses, in keys, expressions or its predicate
    constraint: IndexConstraint | None = None


@dataclass(frozen=True)
class ForeignKeyFacts:
    name: str
    definition: str  # pg_get_constraintdef
    columns: tuple[str, ...]  # the referencing columns
    validated: bool = True


@dataclass(frozen=True)
class ReferenceFacts:
    """A foreign key of another table (``table``, as regclass text) referencing ``columns`` of this one."""

    name: str
    table: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class CheckFacts:
    name: str
    definition: str
    columns: tuple[str, ...]
    validated: bool = True


@dataclass(frozen=True)
class ExclusionFacts:
    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class PartitionFacts:
    """One partition of a partitioned table, at any depth: its parent (the table itself or another
    partition) and whether it holds rows (a leaf) or is partitioned again."""

    schema: str
    name: str
    parent_schema: str
    parent: str
    leaf: bool
    bound: str | None = None  # "FOR VALUES ..." or "DEFAULT", as ATTACH PARTITION takes it


@dataclass(frozen=True)
class IndexTargetFacts:
    """An index an operation names by itself (drop_index): the table it is on, whether it is a partitioned
    table's index (dropped with every partition's index attached below it; never CONCURRENTLY) and, for a
    partition's index attached to one, the partitioned index at the top that owns it."""

    table: str  # "schema.table", quoted where needed
    partitioned: bool = False
    owner: str | None = None  # "schema.index" of the partitioned index it is attached to (at the root)
    tables: tuple[str, ...] = ()  # partitioned: the table and every partition whose attached index goes with it


@dataclass(frozen=True)
class TableFacts:
    columns: tuple[ColumnFacts, ...]
    rights: Rights = Rights()
    indexes: tuple[IndexFacts, ...] = ()
    foreign_keys: tuple[ForeignKeyFacts, ...] = ()
    referenced_by: tuple[ReferenceFacts, ...] = ()
    checks: tuple[CheckFacts, ...] = ()
    exclusions: tuple[ExclusionFacts, ...] = ()
    partitioned: bool = False
    # Every partition below a partitioned table, parents before their children.
    partitions: tuple[PartitionFacts, ...] = ()
    default_partition: str | None = None  # the table's own DEFAULT partition, if any
    partition_key: tuple[str, ...] = ()  # the columns its partition key names (in an expression too)

    def column(self, name: str) -> ColumnFacts | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class CatalogFacts:
    tables: Mapping[str, TableFacts] = field(default_factory=dict)
    schema_usage: tuple[str, ...] = ()  # roles with USAGE on the ops schema
    server_version: int = 0
    renamed: Mapping[str, Rights] = field(default_factory=dict)  # rename_table: the old name's rights
    indexes: Mapping[str, IndexTargetFacts] = field(default_factory=dict)  # drop_index: by the index's name

    def to_json(self) -> dict[str, Any]:
        """The JSON stored in ``ops_state.captured`` (the shape pgshift has always written)."""
        return {"tables": {name: _table_json(t) for name, t in self.tables.items()},
                "schema_usage": list(self.schema_usage), "server_version": self.server_version,
                "renamed": {name: _rights_json(r) for name, r in self.renamed.items()},
                # only when a drop_index found its index: any other keeps the shape earlier releases wrote
                **({"indexes": {name: [i.table, i.partitioned, i.owner, list(i.tables)]
                                for name, i in self.indexes.items()}} if self.indexes else {})}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CatalogFacts:
        return cls({name: _table(t) for name, t in (data.get("tables") or {}).items()},
                   tuple(data.get("schema_usage") or ()), int(data.get("server_version") or 0),
                   {name: _rights(r) for name, r in (data.get("renamed") or {}).items()},
                   {name: IndexTargetFacts(str(i[0]), bool(i[1]), i[2], tuple(i[3]))
                    for name, i in (data.get("indexes") or {}).items()})


def _rights_json(r: Rights) -> dict[str, Any]:
    out: dict[str, Any] = {"grants": [[g.grantee, g.privilege, g.grantable] for g in r.grants],
                           "column_grants": [[g.grantee, g.privilege, g.column, g.grantable] for g in r.column_grants]}
    if r.owner is not None:  # no owner: the table did not exist, and nothing was written
        out.update(rls=r.rls, force_rls=r.force_rls, owner=r.owner, runner=r.runner)
    return out


def _rights(data: Mapping[str, Any]) -> Rights:
    return Rights(tuple(Grant(str(g), str(p), bool(b)) for g, p, b in data.get("grants") or ()),
                  tuple(ColumnGrant(str(g), str(p), str(c), bool(b)) for g, p, c, b in data.get("column_grants") or ()),
                  bool(data.get("rls")), bool(data.get("force_rls")), data.get("owner"), data.get("runner"))


def _table_json(t: TableFacts) -> dict[str, Any]:
    return {
        "columns": [{"name": c.name, "type": c.type, "notnull": c.notnull, "default": c.default, "special": c.special,
                     "collate": c.collate, "comment": c.comment, "statistics": c.statistics, "storage": c.storage,
                     "compression": c.compression} for c in t.columns],
        **_rights_json(t.rights),
        "indexes": [{"name": i.name, "definition": i.definition, "columns": list(i.columns),
                     "constraint": None if i.constraint is None else {
                         "name": i.constraint.name, "type": i.constraint.type,
                         "deferrable": i.constraint.deferrable, "deferred": i.constraint.deferred}}
                    for i in t.indexes],
        "foreign_keys": [{"name": f.name, "definition": f.definition, "columns": list(f.columns),
                          "validated": f.validated} for f in t.foreign_keys],
        "referenced_by": [{"name": r.name, "table": r.table, "columns": list(r.columns)} for r in t.referenced_by],
        "checks": [{"name": c.name, "definition": c.definition, "validated": c.validated, "columns": list(c.columns)}
                   for c in t.checks],
        "exclusions": [{"name": x.name, "columns": list(x.columns)} for x in t.exclusions],
        # only for a partitioned table: any other keeps the shape earlier releases wrote and read
        **({"partitioned": True,
            "partitions": [[p.schema, p.name, p.parent_schema, p.parent, p.leaf, p.bound] for p in t.partitions],
            "default_partition": t.default_partition, "partition_key": list(t.partition_key)}
           if t.partitioned else {}),
    }


def _table(data: Mapping[str, Any]) -> TableFacts:
    def constraint(c: Mapping[str, Any] | None) -> IndexConstraint | None:
        return None if not c else IndexConstraint(str(c["name"]), str(c["type"]), bool(c["deferrable"]),
                                                  bool(c["deferred"]))

    return TableFacts(
        tuple(ColumnFacts(str(c["name"]), str(c["type"]), bool(c["notnull"]), c.get("default"), bool(c["special"]),
                          c.get("collate"), c.get("comment"), c.get("statistics"), c.get("storage"),
                          c.get("compression")) for c in data["columns"]),
        _rights(data),
        tuple(IndexFacts(str(i["name"]), str(i["definition"]), tuple(i["columns"]), constraint(i.get("constraint")))
              for i in data.get("indexes") or ()),
        tuple(ForeignKeyFacts(str(f["name"]), str(f["definition"]), tuple(f["columns"]), bool(f.get("validated", True)))
              for f in data.get("foreign_keys") or ()),
        tuple(ReferenceFacts(str(r["name"]), str(r["table"]), tuple(r["columns"]))
              for r in data.get("referenced_by") or ()),
        tuple(CheckFacts(str(c["name"]), str(c["definition"]), tuple(c["columns"]), bool(c.get("validated", True)))
              for c in data.get("checks") or ()),
        tuple(ExclusionFacts(str(x["name"]), tuple(x["columns"])) for x in data.get("exclusions") or ()),
        bool(data.get("partitioned")),
        tuple(PartitionFacts(str(p[0]), str(p[1]), str(p[2]), str(p[3]), bool(p[4]), p[5] if len(p) > 5 else None)
              for p in data.get("partitions") or ()),
        data.get("default_partition"),
        tuple(data.get("partition_key") or ()),
    )
