"""What every operation shares: typed fields read (and checked) from the file, and the planning
context it adds its expand / contract / abort steps to.

An operation is a frozen dataclass; its fields are the keys of its mapping in the file (a field
named ``from_`` reads the key ``from``). Their types say what the loader accepts and what
docs/ops.schema.json declares: ``str`` (non-empty), ``bool``, ``tuple[str, ...]`` (a non-empty list of
names), ``Column`` / ``tuple[Column, ...]``, or a ``Literal`` of choices. A field with no default is
required. Every field is described (for the schema and docs/operations.md): ``Annotated[type, "text"]``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, Protocol

from psycopg import sql

from pgshift.errors import MigrationSourceError
from pgshift.ops.facts import CatalogFacts, ColumnFacts, PartitionFacts
from pgshift.ops.names import fit, qualified
from pgshift.ops.sync import SyncRule

# What a step is to the step engine (pgshift.runner.steps.Step.kind): one transaction, one statement in
# autocommit, or a batched backfill. Defined here, the lowest layer that names it.
StepKind = Literal["tx", "autocommit", "backfill"]


def key(name: str, default: Any = dataclasses.MISSING) -> Any:
    """A field read from the key ``name`` (for keys that are Python keywords or method names)."""
    return field(default=default, metadata={"key": name})


@dataclass(frozen=True)
class Column:
    """A column as create_table and add_column declare it."""

    name: Annotated[str, "The column's name."]
    type: Annotated[str, "Its type (SQL)."]
    nullable: Annotated[bool, "false: NOT NULL."] = True
    default: Annotated[str | None, "An SQL expression."] = None
    primary_key: Annotated[bool, "The table's primary key."] = False
    check: Annotated[str | None, "A CHECK expression on this column."] = None
    references: Annotated[str | None, "`table` or `table(column)` this column references."] = None


# -- the field table, read from the dataclasses ----------------------------------------------------
@dataclass(frozen=True)
class FieldSpec:
    key: str  # as written in the file
    attr: str  # the dataclass field
    kind: str  # str, bool, int, strs, column, columns, choice
    required: bool
    choices: tuple[str, ...] = ()
    doc: str = ""


def _kind_of(annotation: Any) -> tuple[str, tuple[str, ...]]:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return _kind_of(args[0])
    if typing.get_origin(annotation) is Literal:
        return "choice", tuple(str(a) for a in args)
    if typing.get_origin(annotation) is tuple:
        return ("columns" if args[0] is Column else "strs"), ()
    simple = {str: "str", bool: "bool", int: "int", Column: "column"}
    return simple[annotation], ()


_FIELDS: dict[type, tuple[FieldSpec, ...]] = {}


def fields_of(cls: type) -> tuple[FieldSpec, ...]:
    """The fields of an operation (or of Column), as the file writes them, in declaration order."""
    if cls in _FIELDS:
        return _FIELDS[cls]
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        if f.name == "origin":
            continue
        hint, text = hints[f.name], ""
        if typing.get_origin(hint) is Annotated:  # Annotated[type, "description"]
            hint, text = hint.__origin__, next(str(a) for a in hint.__metadata__)
        kind, choices = _kind_of(hint)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append(FieldSpec(f.metadata.get("key", f.name), f.name, kind, required, choices, text))
    _FIELDS[cls] = tuple(out)
    return _FIELDS[cls]


_EXPECTED = {"str": "a non-empty string", "bool": "true or false", "int": "a whole number >= 0",
             "strs": "a non-empty list of strings"}


def _type_ok(kind: str, value: Any) -> bool:
    if kind in ("str", "choice"):
        return isinstance(value, str) and value.strip() != ""
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if kind == "strs":
        return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)
    return True


def read_fields(cls: type, values: Any, where: str) -> dict[str, Any]:
    """The dataclass arguments for ``values`` (a mapping from the file), checked against ``cls``' fields;
    errors name ``where`` and the key."""
    specs = fields_of(cls)
    if not isinstance(values, dict):
        raise MigrationSourceError(f"{where}: expected a mapping of fields, got {type(values).__name__}.")
    unknown = sorted(set(values) - {s.key for s in specs})
    if unknown:
        raise MigrationSourceError(f"{where}: unknown key {unknown[0]!r}; known keys: "
                                   f"{', '.join(s.key for s in specs)}.")
    args: dict[str, Any] = {}
    for spec in specs:
        value = values.get(spec.key)
        if value is None:
            if spec.required:
                raise MigrationSourceError(f"{where}: the key {spec.key!r} is required.")
            continue
        if spec.kind == "column":
            value = Column(**read_fields(Column, value, f"{where}.{spec.key}"))
        elif spec.kind == "columns":
            if not isinstance(value, list) or not value:
                raise MigrationSourceError(f"{where}: {spec.key!r} must be a non-empty list of columns.")
            value = tuple(Column(**read_fields(Column, c, f"{where}.{spec.key}[{i}]")) for i, c in enumerate(value))
        elif not _type_ok(spec.kind, value):
            expected = _EXPECTED.get(spec.kind, spec.kind)
            raise MigrationSourceError(f"{where}: {spec.key!r} must be {expected}, not {value!r}.")
        elif spec.kind == "strs":
            value = tuple(value)
        elif spec.kind == "choice":  # written in any case, kept as the choice reads
            value = next((c for c in spec.choices if c.upper() == value.upper()), None)
            if value is None:
                raise MigrationSourceError(f"{where}: {spec.key!r} must be one of {', '.join(spec.choices)}.")
        args[spec.attr] = value
    return args


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {s.key: _plain(getattr(value, s.attr)) for s in fields_of(type(value))}
    return value


# -- the operation -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Operation:
    """One operation of an ops file. Subclasses set ``kind``, ``summary``, ``example`` (one list item
    of an ops file, YAML) and ``setup`` (the SQL schema the example applies to), declare their fields,
    and add their steps in ``expand``, ``contract`` and ``abort``; the planner calls the three in that
    order for each operation, in file order."""

    kind: ClassVar[str]
    summary: ClassVar[str]
    example: ClassVar[str]
    setup: ClassVar[str]
    # where it was written ("file: operations[3].add_column"), for error messages
    origin: str = field(default="<python>", kw_only=True, compare=False)

    def validate(self) -> None:
        """Checks across fields (each field's own type is checked as it is read)."""

    def expand(self, plan: Plan, index: int) -> None:
        """Add the expand steps (what runs before the new application version is deployed)."""

    def contract(self, plan: Plan, index: int) -> None:
        """Add the contract steps (what runs once the old application version is gone)."""

    def abort(self, plan: Plan, index: int) -> None:
        """Add the steps that undo expand (run in reverse order of the operations)."""

    def schema_sql(self, schema: str, contracted: bool) -> list[sql.Composable | str]:
        """What the operation leaves in the schema after expand (and contract, when ``contracted``), as plain
        DDL: the linter's schema model replays it (pgshift.lint.opsmodel), and the contracted form, run in a
        rolled-back transaction, is the declared shape a contract must reach (pgshift.rehearsal.shape). An
        operation that changes the schema must say so here. Default: nothing."""
        return []

    @property
    def target(self) -> str | None:
        """The table the operation changes, if it has a ``table`` field."""
        value = self.__dict__.get("table")
        return str(value) if value is not None else None

    def get(self, key: str, default: Any = None) -> Any:
        """A field by the key it has in the file, as the file wrote it (lists as lists)."""
        for spec in fields_of(type(self)):
            if spec.key == key:
                value = getattr(self, spec.attr)
                return default if value is None else _plain(value)
        return default

    def to_dict(self) -> dict[str, Any]:
        """The operation as written in an ops file: ``{kind: {key: value}}`` (fields left out when unset)."""
        return {self.kind: {s.key: _plain(getattr(self, s.attr)) for s in fields_of(type(self))
                            if getattr(self, s.attr) is not None}}


# -- the planning context --------------------------------------------------------------------------
class Plan(Protocol):
    """The shared state operations plan into; pgshift.ops.plan.Planner is the one implementation.

    ``layout`` is each table's column list in the new version, [(visible name, physical column)], from
    which the version schema's views are made; ``moved`` maps a table's replaced columns to their new
    physical columns (indexes and constraints on them are rebuilt on the new ones)."""

    schema: str
    version: str
    vschema: str
    facts: CatalogFacts
    layout: dict[str, list[tuple[str, str]]]
    moved: dict[str, dict[str, str]]

    def t(self, table: str) -> sql.Identifier: ...

    def label(self, table: str) -> str: ...

    def expand(self, label: str, kind: StepKind, statements: Sequence[sql.Composable] = (),
               lock_tables: Sequence[str] = (), *, weak_lock_tables: Sequence[str] = (), index: str | None = None,
               index_schema: str | None = None, warning: str | None = None,
               skip_if: sql.Composable | None = None) -> None: ...

    def contract(self, label: str, kind: StepKind, statements: Sequence[sql.Composable] = (),
                 lock_tables: Sequence[str] = (), *, warning: str | None = None) -> None: ...

    def abort(self, label: str, kind: StepKind, statements: Sequence[sql.Composable] = (),
              lock_tables: Sequence[str] = (), *, weak_lock_tables: Sequence[str] = (),
              warning: str | None = None) -> None: ...

    def validate(self, label: str, table: str | PartitionFacts, constraint: str) -> None:
        """A VALIDATE CONSTRAINT at the start of contract (weak lock; abort can still undo it), on a table
        of the file's schema or on one partition."""

    def finish(self, table: str, statements: Sequence[sql.Composable], *, triggers: bool = False) -> None:
        """Statements of the table's one contract transaction; ``triggers``: those that drop sync triggers
        (they run first: a trigger may read any column dropped after)."""

    def backfill(self, index: int, table: str, touch: str, where: str) -> None: ...

    def sync(self, index: int, table: str, rule: SyncRule) -> list[sql.Composable]:
        """The statements creating the operation's sync trigger."""

    def drop_sync(self, index: int, table: str) -> list[sql.Composable]: ...

    def column(self, op: Operation, name: str) -> ColumnFacts: ...

    def touch_layout(self, table: str) -> list[tuple[str, str]]:
        """The table's new-version layout, to be changed in place; the table gets a view."""

    def old_namespace(self, table: str) -> dict[str, str]: ...

    def new_namespace(self, table: str) -> dict[str, str]: ...

    def not_null_check(self, table: str, column: str) -> str: ...

    def contract_not_null(self, table: str, column: str, check: str, drop: list[sql.Composable]) -> None: ...


# -- SQL pieces shared by the operations and the linter's schema model ------------------------------
def is_constant(expression: str) -> bool:
    """True when a default is a constant (metadata-only ADD COLUMN); anything else is filled in batches."""
    from pgshift.migrations import tree

    try:
        statements = tree.parse(f"SELECT {expression}")
    except tree.ParseError:
        return False
    targets = tree.body(statements[0]).get("targetList") or [] if len(statements) == 1 else []
    if len(targets) != 1:
        return False  # "1, 2" or "1; DROP ..." is no single constant
    node = targets[0]["ResTarget"]["val"]
    while "TypeCast" in node:
        node = node["TypeCast"]["arg"]
    return "A_Const" in node


def column_definition(column: Column) -> sql.Composable:
    parts: list[sql.Composable] = [sql.Identifier(column.name), sql.SQL(column.type)]
    if column.primary_key:
        parts.append(sql.SQL("PRIMARY KEY"))
    if not column.nullable:
        parts.append(sql.SQL("NOT NULL"))
    if column.default is not None:
        parts.append(sql.SQL("DEFAULT {}").format(sql.SQL(column.default)))
    if column.check:
        parts.append(sql.SQL("CHECK ({})").format(sql.SQL(column.check)))
    if column.references:
        parts.append(sql.SQL("REFERENCES {}").format(sql.SQL(column.references)))
    return sql.SQL(" ").join(parts)


def quote(name: str) -> str:
    """A double-quoted identifier for use inside expressions we generate as text."""
    return '"' + name.replace('"', '""') + '"'


VIEW_PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER",
                             "MAINTAIN"})


def role(name: str) -> sql.Composable:
    return sql.SQL("PUBLIC") if name == "PUBLIC" else sql.Identifier(name)


def ids(names: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def grant_option(grantable: bool) -> sql.Composable:
    return sql.SQL(" WITH GRANT OPTION" if grantable else "")


def build_index(plan: Plan, table: str | sql.Identifier, name: str, columns: Sequence[str], unique: bool,
                method: str | None, where: str | None, *, how: str = "CONCURRENTLY") -> sql.Composable:
    """CREATE INDEX CONCURRENTLY IF NOT EXISTS: a rerun after an interruption is harmless. ``table``: a
    table of the file's schema, or any table's identifier (a partition); ``how``: "ONLY" builds a
    partitioned table's own index, empty and INVALID until each partition's is attached."""
    on = plan.t(table) if isinstance(table, str) else table
    statement = sql.SQL("CREATE {}INDEX {}IF NOT EXISTS {} ON {}{} {}({})").format(
        sql.SQL("UNIQUE " if unique else ""), sql.SQL("CONCURRENTLY " if how == "CONCURRENTLY" else ""),
        sql.Identifier(name), sql.SQL("ONLY " if how == "ONLY" else ""), on,
        sql.SQL("USING {} ").format(sql.Identifier(method)) if method else sql.SQL(""), ids(columns))
    if where:
        statement = sql.SQL("{} WHERE {}").format(statement, sql.SQL(where))
    return statement


def partitions(plan: Plan, table: str) -> tuple[PartitionFacts, ...]:
    """The table's partitions at every depth, parents first (empty: not a partitioned table)."""
    info = plan.facts.tables.get(table)
    return info.partitions if info is not None and info.partitioned else ()


def partition_ident(p: PartitionFacts) -> sql.Identifier:
    return sql.Identifier(p.schema, p.name)


def partition_label(p: PartitionFacts) -> str:
    return qualified(p.schema, p.name)


def partition_child_name(name: str, p: PartitionFacts) -> str:
    """The name of what pgshift adds to one partition for the parent's ``name`` (an index, a constraint)."""
    return fit(p.name, name)


class IndexStep(NamedTuple):
    """One expand step of an index built partition by partition (see :func:`partitioned_index_steps`)."""

    label: str
    kind: StepKind
    statements: list[sql.Composable]
    lock_tables: list[str]
    weak_lock_tables: list[str]
    index_name: str | None = None
    index_schema: str | None = None


# (schema, table or partition, the index's name, "ONLY" or "CONCURRENTLY") -> its CREATE INDEX
IndexBuilder = Callable[[str, str, str, str], sql.Composable]


def partitioned_index_steps(plan: Plan, table: str, name: str, build: IndexBuilder) -> list[IndexStep]:
    """An index on a partitioned table without holding writes back: CREATE INDEX on the table builds every
    partition's index under a SHARE lock, and CONCURRENTLY is refused there. So: an empty, INVALID index
    ON ONLY the table (and each partition that is partitioned again), each leaf's built CONCURRENTLY and
    attached as it is built (ALTER INDEX ... ATTACH PARTITION: no scan; a rerun finding it attached does
    nothing); the table's index becomes valid once every partition's is attached."""
    parts = partitions(plan, table)
    parents = [p for p in parts if not p.leaf]

    def index_of(p: PartitionFacts | None) -> tuple[sql.Identifier, str]:
        if p is None:
            return sql.Identifier(plan.schema, name), qualified(plan.schema, name)
        return (sql.Identifier(p.schema, partition_child_name(name, p)),
                qualified(p.schema, partition_child_name(name, p)))

    def attach(p: PartitionFacts) -> IndexStep:
        parent = next((q for q in parts if (q.schema, q.name) == (p.parent_schema, p.parent)), None)
        (parent_ident, parent_label), (ident, label) = index_of(parent), index_of(p)
        return IndexStep(f"attach index {label} to {parent_label}", "tx", [sql.SQL(
            "ALTER INDEX {} ATTACH PARTITION {}").format(parent_ident, ident)], [partition_label(p)], [])

    steps = [IndexStep(
        f"create index {name} ON ONLY {plan.label(table)} (valid once every partition's is attached)", "tx",
        [build(plan.schema, table, name, "ONLY"),
         *(build(p.schema, p.name, partition_child_name(name, p), "ONLY") for p in parents)],
        [plan.label(table), *(partition_label(p) for p in parents)], [])]
    for p in parts:
        if p.leaf:
            child = partition_child_name(name, p)
            steps.append(IndexStep(f"build index {child} on partition {partition_label(p)} concurrently",
                                   "autocommit", [build(p.schema, p.name, child, "CONCURRENTLY")], [],
                                   [partition_label(p)], child, p.schema))
            steps.append(attach(p))
    steps += [attach(p) for p in reversed(parents)]  # the deepest first: its index is valid once its own are
    return steps


def drop_index(plan: Plan, name: str) -> sql.Composable:
    return sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(plan.schema, name))


def drop_constraint(plan: Plan, table: str, name: str) -> sql.Composable:
    return sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(plan.t(table), sql.Identifier(name))


def add_not_null_check(plan: Plan, table: str, check: str, column: str) -> sql.Composable:
    """The NOT VALID CHECK (column IS NOT NULL) that contract validates and turns into SET NOT NULL."""
    return sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID").format(
        plan.t(table), sql.Identifier(check), sql.Identifier(column))
