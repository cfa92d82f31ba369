"""What an operations migration does to the schema, for the linter's model.

An ``.ops`` migration is planned, not linted, but the SQL migrations after it must be judged against the
schema it leaves: its expand (columns, tables, indexes, constraints it adds) and, once contracted, its
contract (dropped columns and tables, renames, new types, NOT NULL). The statements here are never run;
they only replay those effects into :class:`pgshift.lint.schema.Schema`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from pgshift.config import LintSettings
from pgshift.lint.context import RunState
from pgshift.lint.engine import lint_migrations
from pgshift.lint.model import Finding, LintReport, TableSize
from pgshift.lint.schema import Schema
from pgshift.migrations.model import Migration, OpsMigration

if TYPE_CHECKING:
    from pgshift.ops.model import OpsFile


def replay_ops(model: Schema, ops: OpsFile, origin: str, *, contracted: bool) -> list[str]:
    """Apply ``ops``' expand (and its contract when ``contracted``) to ``model``; the tables it creates.
    Each operation says what it leaves in the schema (``schema_sql``)."""
    # Here, not at the top: folder lint imports this module, and only .ops migrations need the operations
    # (and the driver's sql module they compose with).
    from pgshift.ops.operations.create_table import CreateTable
    from pgshift.ops.operations.rename_column import RenameColumn

    created: list[str] = []
    for o in ops.operations:
        if isinstance(o, RenameColumn) and not contracted:
            _copy_column(model, _key(ops, o.table), o.from_, o.to)
            continue
        for statement in o.schema_sql(ops.schema, contracted):
            model.load_sql(statement if isinstance(statement, str) else statement.as_string(), origin)
        if isinstance(o, CreateTable):
            created.append(_key(ops, o.table))
    return created


def ops_lock_findings(model: Schema, m: OpsMigration, settings: LintSettings) -> list[Finding]:
    """What an operation planned as usual cannot do without a strong lock, known from the schema model: a
    drop_index of a partitioned table's index (no CONCURRENTLY form; PS030)."""
    from pgshift.lint import locks
    from pgshift.lint.engine import rule_selected
    from pgshift.lint.registry import rule_by_key
    from pgshift.ops.operations.drop_index import DropIndex

    rule = rule_by_key("PS030")
    if rule is None or not rule_selected(rule, settings):
        return []
    found = []
    for o in m.ops.operations:
        if not isinstance(o, DropIndex):
            continue
        table = model.index_tables.get(o.name) or model.index_tables.get(f"{m.ops.schema}.{o.name}")
        known = model.table(table) if table else None
        if known is None or not known.partitioned:
            continue
        found.append(Finding(
            rule.id, rule.name, "warning", str(m.path or m.label), 1, 1,
            f"{o.origin.rsplit(': ', 1)[-1]}: {o.name} is the index of the partitioned table {table}: PostgreSQL "
            "cannot drop it CONCURRENTLY, so contract drops it (with every partition's index attached to it) in one "
            f"transaction under an ACCESS EXCLUSIVE lock on {table} and each partition, for a moment (catalog only, "
            "no scan), "
            "under the file's lock_timeout with retries.", f"drop_index {o.name}", m.label, "ACCESS EXCLUSIVE",
            locks.BLOCKS.get("ACCESS EXCLUSIVE", rule.blocks)))
    return found


def _key(ops: OpsFile, table: str) -> str:
    """The model's name for a table: unqualified in public, as the linter compares names."""
    return table if ops.schema == "public" else f"{ops.schema}.{table}"


def _copy_column(model: Schema, table: str, old: str, new: str) -> None:
    """Expanded rename_column: the new column exists beside the old one, of the same type."""
    known = model.table(table)
    if known is not None and old in known.columns:
        known.columns[new] = dataclasses.replace(known.columns[old], name=new)


def lint_in_order(pending: list[Migration], history: list[Migration], *, expanded: Collection[str] = (),
                  settings: LintSettings, pg_version: int, sizes: dict[str, TableSize], schema: Schema | None,
                  run: RunState, rollback: bool = False, collect_locks: bool = False) -> LintReport:
    """Lint ``pending`` after replaying ``history``, in order, with each operations migration's effect on the
    schema model where it stands: SQL migrations are linted, operations migrations replayed (the applied
    ones contracted unless their version is in ``expanded``; the pending ones expanded only, as `migrate`
    leaves them). The gate (:func:`pgshift.lint.live.lint_pending`) and folder lint share this."""
    options: dict[str, Any] = {"settings": settings, "pg_version": pg_version, "sizes": sizes, "live": run.live,
                               "rollback": rollback, "collect_locks": collect_locks, "run": run}
    if not any(isinstance(m, OpsMigration) for m in [*pending, *history]):
        return lint_migrations(pending, history=history, schema=schema, **options)
    model, report = schema if schema is not None else Schema(), LintReport(pg_version=pg_version)

    def lint(chunk: list[Migration], replayed: list[Migration]) -> None:
        if not chunk and not replayed:
            return
        part = lint_migrations(chunk, history=replayed, schema=model, **options)
        report.findings += part.findings
        report.parse_errors += part.parse_errors
        report.lock_steps += part.lock_steps
        report.files += part.files
        report.statements += part.statements

    chunk: list[Migration] = []
    for m in history:  # replayed in order, an operations migration where it ran
        if not isinstance(m, OpsMigration):
            chunk.append(m)
            continue
        lint([], chunk)
        chunk = []
        replay_ops(model, m.ops, m.label, contracted=m.version not in expanded)
    lint([], chunk)
    chunk = []
    for m in pending:
        if not isinstance(m, OpsMigration):
            chunk.append(m)
            continue
        lint(chunk, [])
        chunk = []
        report.findings += ops_lock_findings(model, m, settings)
        for table in replay_ops(model, m.ops, m.label, contracted=False):
            if run.live and table not in run.sizes:  # created by this run: new and empty, as a CREATE TABLE is
                run.fresh.add(table)
    lint(chunk, [])
    return report
