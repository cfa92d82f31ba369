"""What a rule sees about one statement: its parse tree, the schema before it, the target
PostgreSQL version, the transaction it runs in and the locks already held there."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pgshift.config import LintSettings, Settings
from pgshift.lint.locks import named_locks
from pgshift.lint.nodes import Node, cmds, relname
from pgshift.lint.schema import Schema, Table, TableSize
from pgshift.migrations.analysis import StatementFacts, facts_of
from pgshift.migrations.blocks import Boundaries
from pgshift.migrations.model import Statement


@dataclass
class TxState:
    """One transaction (or one auto-committed statement when ``active`` is False)."""

    active: bool = False
    explicit: bool = False  # opened by BEGIN in the SQL itself
    locks: dict[str, str] = field(default_factory=dict)
    ddl: list[str] = field(default_factory=list)  # tables changed by DDL in this transaction
    dml: list[str] = field(default_factory=list)  # tables written by DML in this transaction
    added_constraints: set[tuple[str, str]] = field(default_factory=set)
    enum_values: set[str] = field(default_factory=set)
    access_exclusive: tuple[str, str] | None = None  # (table, where) of the first one
    statements: int = 0
    flags: set[str] = field(default_factory=set)  # once-per-transaction findings already made


@dataclass
class UnitState:
    """One migration (or one linted file): tables it created, timeouts it set."""

    label: str | None
    transactional: bool
    # How the file's tool treats its own BEGIN / COMMIT (pgshift.migrations.blocks); None: pgshift's runner owns it.
    boundaries: Boundaries | None = None
    created: set[str] = field(default_factory=set)
    lock_timeout: bool = False
    statement_timeout: bool = False
    has_other_statements: bool = False
    flags: set[str] = field(default_factory=set)  # once-per-migration findings already made
    # (table, leading column) -> position of the last CREATE INDEX on it in this unit
    index_positions: dict[tuple[str, str], int] = field(default_factory=dict)
    # Fills index_positions when a rule first asks (parsing the unit's CREATE INDEX statements again), then None.
    find_indexes: Callable[[], None] | None = None
    # PL/pgSQL functions and procedures this migration created: name -> (its CREATE, its body)
    plpgsql: dict[str, tuple[Statement, str]] = field(default_factory=dict)


def runner_timeouts(settings: Settings) -> frozenset[str]:
    """The timeouts `migrate` sets around every migration with these settings (a 0 sets none)."""
    return frozenset(name for name, value in (("lock_timeout", settings.lock_timeout),
                                              ("statement_timeout", settings.statement_timeout)) if value.ms)


@dataclass
class RunState:
    """What the statements linted so far did to tables, across the migrations (or files) of one run.

    ``sizes`` starts as the server's and follows the run: a table the run fills (INSERT ... SELECT,
    COPY FROM, MERGE) or drops loses its size (unknown again), a renamed one keeps it. With
    ``live`` (the sizes list every table the server has), a table the run creates that the server
    does not have is in ``fresh``: new and empty until a statement fills it, in later migrations too.
    """

    sizes: dict[str, TableSize] = field(default_factory=dict)
    live: bool = False
    fresh: set[str] = field(default_factory=set)
    # Created by the current unit though the server has them: new in that unit only.
    unit_only: set[str] = field(default_factory=set)
    # The timeouts pgshift's runner sets around every migration of this run ("lock_timeout",
    # "statement_timeout"): lint judges each unit as if it set them itself, because it will run so.
    runner_sets: frozenset[str] = frozenset()

    def enter(self, unit: UnitState) -> None:
        """Start linting ``unit``. With ``live`` its new tables are the run's: the same set, not a
        copy, so a run of thousands of migrations creating tables stays linear."""
        unit.lock_timeout |= "lock_timeout" in self.runner_sets
        unit.statement_timeout |= "statement_timeout" in self.runner_sets
        if self.live:
            self.fresh -= self.unit_only
            self.unit_only.clear()
            unit.created = self.fresh


@dataclass(slots=True)
class Ctx:
    statement: Statement
    node: Node
    kind: str
    body: Node
    schema: Schema
    pg_version: int
    settings: LintSettings
    tx: TxState
    unit: UnitState
    sizes: dict[str, TableSize]
    all_sql: Sequence[str]  # SQL of every statement in the unit (of a streamed part: read when asked)
    position: int  # this statement's index in all_sql
    # Computed on first use and kept: plain attributes, because functools.cached_property takes a
    # lock on every first access (Python 3.11), which showed in profiles at 50k statements.
    _alter_cmds: list[tuple[str, str, Node]] | None = field(default=None, repr=False)
    _locks: list[tuple[str, str]] | None = field(default=None, repr=False)
    _facts: StatementFacts | None = field(default=None, repr=False)
    _new_columns: list[tuple[str, Node]] | None = field(default=None, repr=False)
    _by_subtype: dict[str, list[tuple[str, Node]]] | None = field(default=None, repr=False)

    @property
    def facts(self) -> StatementFacts:
        """What the runner, ``check`` and ``rehearse`` know of this statement, from this same tree (once
        per statement: each fact is decided when a rule or the engine first asks for it)."""
        if self._facts is None:
            self._facts = facts_of(self.node)
        return self._facts

    @property
    def rest(self) -> Sequence[str]:
        """SQL of the statements after this one in the same migration (built on demand)."""
        return self.all_sql[self.position + 1:]

    def index_created_later(self, table: str, column: str) -> bool:
        if self.unit.find_indexes is not None:
            find, self.unit.find_indexes = self.unit.find_indexes, None
            find()
        return self.unit.index_positions.get((table, column), -1) > self.position

    def table(self, name: str) -> Table | None:
        return self.schema.table(name)

    def is_new(self, table: str) -> bool:
        """Created earlier in the same migration, or in an earlier migration of a run linted against
        the server that lacks it, and not filled since: nobody uses it yet and it holds no rows."""
        return table in self.unit.created

    def size(self, table: str) -> TableSize | None:
        return self.sizes.get(table)

    @property
    def alter_cmds(self) -> list[tuple[str, str, Node]]:
        """(subtype, table, cmd) of an ALTER TABLE, computed once for all rules."""
        if self._alter_cmds is None:
            if self.kind != "AlterTableStmt":
                self._alter_cmds = []
            else:
                table = relname(self.body.get("relation"))
                self._alter_cmds = [(str(c.get("subtype", "")), table, c) for c in cmds(self.body)]
        return self._alter_cmds

    def cmds_of(self, subtype: str) -> list[tuple[str, Node]]:
        """(table, cmd) of the ALTER TABLE commands of one subtype, grouped once for all rules."""
        if self._by_subtype is None:
            self._by_subtype = {}
            for sub, table, cmd in self.alter_cmds:
                self._by_subtype.setdefault(sub, []).append((table, cmd))
        return self._by_subtype.get(subtype, [])

    @property
    def new_columns(self) -> list[tuple[str, Node]]:
        """(table, ColumnDef) of the columns a CREATE TABLE or ALTER TABLE ... ADD COLUMN defines, found
        once for the several rules that judge new columns."""
        if self._new_columns is None:
            found: list[tuple[str, Node]] = []
            if self.kind == "CreateStmt":
                table = relname(self.body.get("relation"))
                found = [(table, elt["ColumnDef"]) for elt in self.body.get("tableElts") or () if "ColumnDef" in elt]
            elif self.kind == "AlterTableStmt":
                for subtype, table, cmd in self.alter_cmds:
                    coldef = (cmd.get("def") or {}).get("ColumnDef") if subtype == "AT_AddColumn" else None
                    if coldef:
                        found.append((table, coldef))
            self._new_columns = found
        return self._new_columns

    @property
    def locks(self) -> list[tuple[str, str]]:
        """(table, level) this statement takes, judged before it changes the schema model."""
        if self._locks is None:
            self._locks = named_locks(self.facts.locks, self.schema.index_tables)
        return self._locks

    def locks_existing(self) -> list[tuple[str, str]]:
        return [(t, level) for t, level in self.locks if t not in self.unit.created]

    @property
    def in_transaction(self) -> bool:
        return self.tx.active

    @property
    def timeouts_managed(self) -> bool:
        return self.settings.runner_timeouts
