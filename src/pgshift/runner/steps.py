"""A migration as the step engine runs it: a list of steps, each one transaction, one statement in
autocommit, or a batched backfill. SQL migrations get theirs from :func:`sql_steps`; operations
migrations from their planner (pgshift.ops.plan). ``pgshift migrate --dry-run`` prints the same
list (:func:`render_steps`), so what it shows is what runs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, overload

import psycopg
from psycopg import sql

from pgshift.migrations.analysis import analyse_all
from pgshift.migrations.blocks import Block, plan_blocks
from pgshift.migrations.classify import autocommit_reason, concurrent_index, transaction_control, transaction_modes
from pgshift.migrations.model import Migration, Statement
from pgshift.migrations.splitter import first_word
from pgshift.ops.names import qualified, quote_ident
from pgshift.ops.operations._base import StepKind
from pgshift.runner.backfill import BackfillOptions, BackfillSpec
from pgshift.units import Duration


@dataclass
class Step:
    label: str
    kind: StepKind
    statements: Sequence[sql.Composable] = field(default_factory=list)
    lock_tables: list[str] = field(default_factory=list)  # "schema.table" taking a strong lock
    # "schema.table" taking SHARE UPDATE EXCLUSIVE (VALIDATE, CONCURRENTLY): no reader blocks it, but an
    # autovacuum does, and never yields to a waiter whose lock_timeout is shorter than deadlock_timeout.
    weak_lock_tables: list[str] = field(default_factory=list)
    backfill: BackfillSpec | None = None
    warning: str | None = None
    # The index a CONCURRENTLY build creates: a failed or interrupted build leaves it INVALID, and the
    # engine drops it by this name, never one read back from SQL text.
    index: str | None = None
    index_schema: str | None = None  # None: found on the search_path
    drops_index: bool = False  # DROP INDEX CONCURRENTLY of ``index`` (done when it is gone)
    # An autocommit statement that cannot be written to be rerun harmlessly (DETACH PARTITION CONCURRENTLY):
    # a query returning true when its effect is already there, asked before each attempt; true skips it.
    skip_if: sql.Composable | None = None
    # A SQL migration's own statements, as observers and error messages see them (ops steps: none).
    sources: Sequence[Statement] = field(default_factory=list)
    modes: str | None = None  # SET TRANSACTION modes of the file's BEGIN opening this step's transaction

    @property
    def where(self) -> str | None:
        """file:line:column of the step's first statement, for a SQL migration's step."""
        return self.sources[0].where if self.sources else None


@dataclass(frozen=True)
class StepStatement(Statement):
    """One statement of an ops step, as the engine's observers see statements: ``where`` names the
    file, phase and step; a backfill is one statement for all its batches, with the rows it updated."""

    step: str = ""
    rows: int | None = None

    @property
    def where(self) -> str:
        return f"{self.file} ({self.step})"


@dataclass
class SqlStep(Step):
    """A step of a SQL migration: ``end`` statements of the part are done when it commits."""

    end: int = 0
    skipped: list[Statement] = field(default_factory=list)  # BEGIN / COMMIT the runner replaces
    autocommit_reason: str | None = None
    block: str | None = None  # "block 2 of 3, file:4-6" when the file's own BEGIN / COMMIT made it


@dataclass
class SqlSteps:
    mode: str  # "transaction", "statement-by-statement" or "transaction blocks"
    steps: Sequence[SqlStep]  # a list, or StatementSteps (a streamed part run statement by statement)
    blocks: int = 0


def transaction_blocks(migration: Migration, statements: Sequence[Statement], server_major: int) -> list[Block] | None:
    """The blocks of a part with its own BEGIN / COMMIT / END, or None when it runs as before."""
    return plan_blocks(migration, statements, transaction_control, lambda text: autocommit_reason(text, server_major))


def needs_steps(migration: Migration, statements: Sequence[Statement], server_major: int) -> bool:
    return not migration.transactional or any(autocommit_reason(s.sql, server_major) for s in statements)


# Statements that can take ACCESS EXCLUSIVE on a table start with one of these words; any other
# (INSERT, UPDATE: most of a data migration) is never parsed here.
_LOCKING_WORDS = frozenset({"ALTER", "CLUSTER", "CREATE", "DROP", "LOCK", "REFRESH", "REINDEX", "TRUNCATE", "VACUUM"})


def table_locks(statements: Iterable[Statement]) -> tuple[list[str], list[str]]:
    """(tables the statements lock ACCESS EXCLUSIVE, tables they lock SHARE UPDATE EXCLUSIVE), from the one
    statement analysis (pgshift.migrations.analysis). A request for the first queues behind any lock on
    the table. Only statements whose first word can take such a lock are analysed (not a file's INSERTs)."""
    strong: list[str] = []
    weak: list[str] = []
    for stmt in statements:
        if first_word(stmt.sql) not in _LOCKING_WORDS:
            continue
        for facts in analyse_all(stmt.sql):
            for lock in facts.locks:
                if lock.on_index:  # an index named without its table: nothing to look up here
                    continue
                found = strong if lock.level == "ACCESS EXCLUSIVE" else weak if lock.level == "SHARE UPDATE EXCLUSIVE" \
                    else None
                schema, name = lock.relation
                table = ".".join(quote_ident(part) for part in ((schema, name) if schema else (name,)))
                if found is not None and name and table not in found:
                    found.append(table)
    return strong, [t for t in weak if t not in strong]


# Statements that can leave statistics stale start with one of these words; an INSERT only when it names
# a query (SELECT or TABLE): a data file's thousands of INSERT ... VALUES are never parsed for it.
_STALE_WORDS = frozenset({"ALTER", "CLUSTER", "COPY", "CREATE", "INSERT", "UPDATE", "WITH"})


def _may_leave_stale(text: str) -> bool:
    word = first_word(text)
    if word not in _STALE_WORDS:
        return False
    if word != "INSERT":
        return True
    lowered = text.lower()
    return "select" in lowered or "table" in lowered


def stale_statistics(steps: Iterable[Step], conn: psycopg.Connection[Any]) -> list[str]:
    """The tables ("schema.table", or "table" found on the search_path) whose planner statistics the steps
    leave stale, from the one statement analysis: rewritten with new values or order, an expression index,
    a backfill or a bulk load. The engine runs ANALYZE on them once the migration has committed."""
    found: list[str] = []

    def add(schema: str | None, name: str) -> None:
        table = ".".join(quote_ident(part) for part in ((schema, name) if schema else (name,)))
        if name and table not in found:
            found.append(table)

    for step in steps:
        if step.backfill is not None:
            add(step.backfill.schema, step.backfill.table)
        texts = (s.sql for s in step.sources) if step.sources else (s.as_string(conn) for s in step.statements)
        for text in filter(_may_leave_stale, texts):
            for facts in analyse_all(text):
                for schema, name in facts.stale_statistics:
                    add(schema, name)
    return found


def _position(index: int, length: int) -> int:
    """``index`` of a lazy sequence of ``length`` items as a position from its start (negative counts back)."""
    position = index + length if index < 0 else index
    if not 0 <= position < length:
        raise IndexError(index)
    return position


class RunnableStatements(Sequence[Statement]):
    """A streamed part's statements but its BEGIN / COMMIT (which the runner replaces): read again from
    the file each time they are iterated, never held (pgshift.migrations.splitter.StreamedStatements)."""

    def __init__(self, part: Sequence[Statement], count: int) -> None:
        self.part, self.count_ = part, count

    def __len__(self) -> int:
        return self.count_

    def __iter__(self) -> Iterator[Statement]:
        return (s for s in self.part if not transaction_control(s.sql))

    @overload
    def __getitem__(self, index: int) -> Statement: ...

    @overload
    def __getitem__(self, index: slice) -> list[Statement]: ...

    def __getitem__(self, index: int | slice) -> Statement | list[Statement]:
        if isinstance(index, slice):
            return list(islice(self, *index.indices(len(self))))
        return next(islice(self, _position(index, len(self)), None))


class SqlOf(Sequence[sql.Composable]):
    """``sql.SQL`` of each statement of ``statements``, made as they are iterated (a streamed part's)."""

    def __init__(self, statements: Sequence[Statement]) -> None:
        self.statements = statements

    def __len__(self) -> int:
        return len(self.statements)

    def __iter__(self) -> Iterator[sql.Composable]:
        return (sql.SQL(s.sql) for s in self.statements)

    @overload
    def __getitem__(self, index: int) -> sql.Composable: ...

    @overload
    def __getitem__(self, index: slice) -> list[sql.Composable]: ...

    def __getitem__(self, index: int | slice) -> sql.Composable | list[sql.Composable]:
        if isinstance(index, slice):
            return [sql.SQL(s.sql) for s in self.statements[index]]
        return sql.SQL(self.statements[index].sql)


def _sql_step(label: str, kind: StepKind, part: Sequence[Statement], end: int, **extra: Any) -> SqlStep:
    runnable: Sequence[Statement]
    if isinstance(part, list):
        runnable = [s for s in part if not transaction_control(s.sql)]
        skipped = [s for s in part if transaction_control(s.sql)]
        statements: Sequence[sql.Composable] = [sql.SQL(s.sql) for s in runnable]
    else:  # a streamed part: its few BEGIN / COMMIT are kept, the rest read again when it runs
        skipped = [s for s in part if transaction_control(s.sql)]
        runnable = RunnableStatements(part, len(part) - len(skipped))
        statements = SqlOf(runnable)
    strong, weak = table_locks(runnable)
    step = SqlStep(label, kind, statements, strong, weak, sources=runnable, end=end, skipped=skipped, **extra)
    if kind == "autocommit" and runnable:
        target = concurrent_index(runnable[0].sql)
        if target is not None and target.name is not None:
            step.index, step.index_schema = target.name, target.schema
            step.drops_index = first_word(runnable[0].sql) != "CREATE"
    return step


class StatementSteps(Sequence[SqlStep]):
    """A streamed part's steps run statement by statement, from statement ``done`` on: each made when
    the engine reaches it (steps[i] in order costs one statement), so they are never all held."""

    def __init__(self, statements: Sequence[Statement], server_major: int, done: int) -> None:
        self.statements, self.server_major, self.done = statements, server_major, done
        self._made: Iterator[SqlStep] | None = None
        self._at = -1  # index of self._last
        self._last: SqlStep | None = None

    def __len__(self) -> int:
        return max(0, len(self.statements) - self.done)

    def __iter__(self) -> Iterator[SqlStep]:
        return self._make(0)

    def _make(self, start: int) -> Iterator[SqlStep]:
        first = self.done + start
        for index, stmt in enumerate(islice(self.statements, first, None), first):
            reason = autocommit_reason(stmt.sql, self.server_major)
            yield _sql_step(f"statement {index + 1}", "autocommit" if reason else "tx", [stmt], index + 1,
                            autocommit_reason=reason)

    @overload
    def __getitem__(self, index: int) -> SqlStep: ...

    @overload
    def __getitem__(self, index: slice) -> list[SqlStep]: ...

    def __getitem__(self, index: int | slice) -> SqlStep | list[SqlStep]:
        if isinstance(index, slice):
            return list(islice(self, *index.indices(len(self))))
        position = _position(index, len(self))
        if self._last is None or position != self._at:
            if self._made is None or position < self._at:
                self._made, self._at = self._make(position), position - 1
            while self._at < position:
                self._last, self._at = next(self._made), self._at + 1
        assert self._last is not None
        return self._last


def sql_steps(migration: Migration, statements: Sequence[Statement], server_major: int, done: int = 0) -> SqlSteps:
    """The steps of a SQL migration's part, from statement ``done`` on (what an interrupted run left)."""
    blocks = transaction_blocks(migration, statements, server_major)
    if blocks is not None:
        steps: list[SqlStep] = []
        for number, block in enumerate(blocks, 1):
            if block.end <= done:
                continue  # committed before the interruption
            first = max(block.start, done)
            part = statements[first:block.end]
            runnable = [s for s in part if not transaction_control(s.sql)]
            span = (f"{runnable[0].line}-{runnable[-1].line}" if len(runnable) > 1 else
                    f"{runnable[0].line}" if runnable else "")
            where = f"block {number} of {len(blocks)}, {runnable[0].file}:{span}" if runnable else None
            if not block.transactional and runnable:
                steps.append(_sql_step(f"statement {first + 1}", "autocommit", part, block.end, block=where,
                                       autocommit_reason=autocommit_reason(runnable[0].sql, server_major)))
                continue
            # BEGIN ISOLATION LEVEL ... opening the block keeps its modes (they must come first).
            opener = statements[block.start] if first == block.start else None
            modes = transaction_modes(opener.sql) if opener and transaction_control(opener.sql) else None
            steps.append(_sql_step(where or f"statement {first + 1}", "tx", part, block.end, block=where,
                                   modes=modes))
        return SqlSteps("transaction blocks", steps, len(blocks))
    if needs_steps(migration, statements, server_major):
        if not isinstance(statements, list):  # a streamed part: its steps are made as they run
            return SqlSteps("statement-by-statement", StatementSteps(statements, server_major, done))
        steps = []
        for index, stmt in enumerate(islice(statements, done, None), done):
            reason = autocommit_reason(stmt.sql, server_major)
            steps.append(_sql_step(f"statement {index + 1}", "autocommit" if reason else "tx", [stmt], index + 1,
                                   autocommit_reason=reason))
        return SqlSteps("statement-by-statement", steps)
    return SqlSteps("transaction", [_sql_step(migration.label, "tx", statements, len(statements))])


@dataclass(frozen=True)
class StepTimeouts:
    lock_timeout: Duration
    statement_timeout: Duration
    # A statement in autocommit runs under statement_timeout too (SQL migrations), or under none ('0',
    # set, not left to the database's default), so a long CONCURRENTLY build is never cancelled
    # (operations migrations).
    autocommit_statement_timeout: bool = True
    # The migration's own server settings, (name, value): SET LOCAL in each transaction step, SET before
    # and RESET after each autocommit step or backfill, so none outlives the step on the connection.
    settings: tuple[tuple[str, str], ...] = ()


def session_settings(migration: Migration) -> tuple[tuple[str, str], ...]:
    return tuple((s.name, s.value) for s in migration.settings)


def setting_name(name: str) -> sql.Composable:
    """A setting's name as SET / RESET take it (a custom one is two identifiers: ``app.flag``), quoted
    only where it must be, as ``SHOW`` and the docs spell it."""
    return sql.SQL(".".join(quote_ident(part) for part in name.split(".")))


def render_steps(steps: list[Step], timeouts: StepTimeouts, conn: psycopg.Connection[Any], *,
                 numbered: bool = False, first: int = 1, total: int | None = None,
                 backfill: BackfillOptions | None = None, analyze: bool = False) -> list[str]:
    """The SQL the engine sends for ``steps``, with transaction boundaries and timeouts, one line each
    (``numbered``: a heading per step, as operations migrations print them; ``analyze``: the ANALYZE
    that follows, see :func:`stale_statistics`)."""

    def literal(value: str) -> str:
        return sql.Literal(value).as_string(conn)

    lock, stmt_timeout = literal(timeouts.lock_timeout.postgres), literal(timeouts.statement_timeout.postgres)

    def sets(local: bool) -> list[str]:
        return [sql.SQL("SET LOCAL {} = {};" if local else "SET {} = {};").format(
            setting_name(name), sql.Literal(value)).as_string(conn) for name, value in timeouts.settings]

    resets = [sql.SQL("RESET {};").format(setting_name(name)).as_string(conn) for name, _ in timeouts.settings]
    count = total if total is not None else len(steps) + first - 1
    lines: list[str] = []
    for number, step in enumerate(steps, first):
        head = f"-- step {number}/{count}: {step.label}" if numbered else None
        texts = [f"{s.as_string(conn)};" for s in step.statements]
        skipped = [f"-- skipped {s.summary} (pgshift manages transactions)" for s in getattr(step, "skipped", [])]
        if step.warning:
            lines.append(f"-- warning: {step.warning}")
        if step.kind == "backfill" and step.backfill is not None:
            spec, opts = step.backfill, backfill or BackfillOptions()
            cap = (f", a batch holding its row locks over {opts.max_lock_ms} ms is redone smaller"
                   if opts.max_lock_ms else "")
            lines += [f"{head or '-- backfill'} (batches of about {opts.target_ms} ms, the first "
                      f"{opts.initial_batch} rows, each its own transaction{cap}; resumable)", *sets(False),
                      f"-- UPDATE {qualified(spec.schema, spec.table) if spec.schema else spec.table} SET "
                      f"{spec.set_clause}" + (f" WHERE {spec.where}" if spec.where else "") + " -- in keyset batches",
                      *resets]
        elif not texts and skipped:
            lines += skipped
        elif step.kind == "autocommit":
            reason = getattr(step, "autocommit_reason", None)
            lines.append(f"{head} (autocommit: cannot run in a transaction)" if head else f"-- autocommit: {reason}")
            if step.skip_if is not None:
                lines.append(f"-- skipped when an earlier run did it: {step.skip_if.as_string(conn)}")
            lines.append(f"SET lock_timeout = {lock};")
            # '0' is set all the same: a database's own statement_timeout would apply otherwise.
            limit = stmt_timeout if timeouts.autocommit_statement_timeout else literal("0")
            lines.append(f"SET statement_timeout = {limit};")
            lines += [*sets(False), *skipped, *texts, "RESET lock_timeout;", "RESET statement_timeout;", *resets]
        else:
            if head:
                lines.append(f"{head} (one transaction, with its progress)")
            lines += ["BEGIN;", *([f"SET TRANSACTION {step.modes};"] if step.modes else []),
                      f"SET LOCAL lock_timeout = {lock};", f"SET LOCAL statement_timeout = {stmt_timeout};",
                      *sets(True), *skipped, *texts, "COMMIT;"]
    stale = stale_statistics(steps, conn) if analyze else []
    if stale:
        lines += [f"-- then, its statistics stale: ANALYZE under lock_timeout {lock} (analyze_after = false: not)",
                  f"SET lock_timeout = {lock};", *(f"ANALYZE {table};" for table in stale), "RESET lock_timeout;"]
    return lines
