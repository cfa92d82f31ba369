"""``rehearse``: clone, snapshot, load, migrate, test, roll back, re-apply, judge, drop.

The source database is only read (a template copy or pg_dump); every change happens on the
clone, and the clone is dropped in a ``finally`` (also on Ctrl-C and SIGTERM) unless ``keep``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg import sql

from pgshift import deploy
from pgshift.config import Settings
from pgshift.db.connect import connect, describe_target, require_url
from pgshift.db.history import History
from pgshift.db.session import open_connection
from pgshift.errors import Interrupted, PgshiftError, RehearsalFailed
from pgshift.migrations.model import OpsMigration, SqlMigration
from pgshift.rehearsal import catalog
from pgshift.rehearsal.clone import (
    KEPT,
    claimed_name,
    dbname_of,
    drop_clone,
    maintenance_connection,
    make_clone,
    mark_clone,
    other_sessions,
    sweep_leftover_clones,
)
from pgshift.rehearsal.model import REPORT_VERSION as REPORT_VERSION
from pgshift.rehearsal.model import Reason, TestRun, WorkloadReport
from pgshift.rehearsal.model import RehearsalOptions as RehearsalOptions
from pgshift.rehearsal.model import RehearsalReport as RehearsalReport
from pgshift.rehearsal.recorder import Recorder, StatementRecord
from pgshift.rehearsal.verdict import judge
from pgshift.rehearsal.workload import (
    WAIT_ERRORS,
    Clock,
    Sample,
    Workload,
    discover,
    error_messages,
    mark_own_errors,
    touched_tables,
)
from pgshift.safety.backup import latest_verified_backup

Notify = Callable[[str], None]
def _current_backup(settings: Settings, source_url: str) -> Path | None:
    """When the source is busy (no template copy), prefer restoring the newest verified backup over a
    fresh pg_dump of production, if that backup is recent and its schema is the current one (same
    pgshift history head)."""
    with maintenance_connection(source_url) as admin:
        if other_sessions(admin, dbname_of(source_url)) == 0:
            return None  # a template copy is faster and exact
    with open_connection(settings) as conn:
        try:
            # In backup.directory or recorded in the ledger wherever it was written (backup --to).
            backup = latest_verified_backup(settings, settings.backup.max_age, database=dbname_of(source_url),
                                            conn=conn)
        except PgshiftError:
            return None
        head = History(conn, settings.history_schema).head()
    return backup.path if backup is not None and backup.manifest.history_head == head else None


def rehearse(settings: Settings, options: RehearsalOptions | None = None, *,
             notify: Notify | None = None) -> RehearsalReport:
    """Rehearse the pending migrations of ``settings.database_url`` on a clone; never raises for a
    failing verdict (see :attr:`RehearsalReport.passed`), only when the rehearsal cannot run."""
    options = options or RehearsalOptions()
    if options.large_table_rows is None:
        options = dataclasses.replace(options, large_table_rows=settings.lint.large_table_rows)
    say = notify or (lambda _m: None)
    source_url = require_url(settings.database_url)
    plan = deploy.status(settings).plan  # unreadable pending migrations fail before anything is copied
    deploy.refuse_unusable(plan, plan.pending, suggest_to=False)
    clock = Clock()
    report = RehearsalReport(describe_target(source_url), None, options.keep,
                             datetime.now(UTC).isoformat(timespec="seconds"), options)
    with _terminate_as_interrupt(), claimed_name(source_url) as name:
        try:
            for leftover in sweep_leftover_clones(source_url, own=name):
                report.warnings.append(f"dropped clone {leftover} left behind by a rehearse that was killed")
                say(f"dropped clone {leftover} left behind by a rehearse that was killed")
            say("cloning the database")
            from_backup = options.from_backup or _current_backup(settings, source_url)
            report.clone = make_clone(source_url, from_backup=from_backup, bindir=settings.backup.pg_bindir,
                                      lock_wait_ms=settings.lock_wait.ms, name=name)
            say(f"clone {report.clone.name} made by {report.clone.method} in {report.clone.duration_s:.2f}s")
            _on_clone(settings, options, report, clock, say)
        finally:
            if report.clone is not None and not options.keep:
                _drop_quietly(source_url, report.clone.name)
                say(f"dropped clone {report.clone.name}")
            elif report.clone is not None:
                mark_clone(source_url, report.clone.name, KEPT)  # not a leftover: the next rehearse keeps it
    report.duration_s = clock.now()
    report.reasons = judge(report)
    return report


def _drop_quietly(source_url: str, name: str) -> None:
    """Drop the clone even while the user keeps pressing Ctrl-C."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        drop_clone(source_url, name)
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so ``finally`` drops the clone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _on_clone(settings: Settings, options: RehearsalOptions, report: RehearsalReport, clock: Clock,
              say: Notify) -> None:
    assert report.clone is not None
    # migrate_url names the source's direct connection: the clone's deploy session must not go there.
    clone = dataclasses.replace(settings, database_url=report.clone.url, migrate_url=None)
    history = settings.history_schema
    pending = deploy.status(clone).pending
    report.pending = [m.version for m in pending]
    with connect(report.clone.url, application_name="pgshift-rehearse") as conn:
        _analyze(conn, touched_tables(pending))
        before = catalog.snapshot(conn, history_schema=history)
    report.schema.before = catalog.fingerprint(before)
    if not pending:
        report.warnings.append("nothing to rehearse: no pending migrations")
        return
    recorder = Recorder(report.clone.url, clock, history_schema=history)
    recorder.start()
    # One workload for every phase: a rollback runs under live traffic too, and is judged by it.
    workload = _start_workload(options, report, clock, pending)
    try:
        if workload is not None:
            time.sleep(options.warmup_s)  # a baseline of normal latency before the first statement
        if not _up(clone, report, recorder, clock, pending, say):
            return
        with connect(report.clone.url) as conn:
            after_up = catalog.snapshot(conn, history_schema=history)
        report.schema.after_up = catalog.fingerprint(after_up)
        report.schema.migration_changes = catalog.diff(before, after_up)
        if options.test_cmd:
            say(f"running {options.test_cmd}")
            report.test = run_test(options.test_cmd, report.clone.url, options.test_timeout_s)
        if options.check_down and not _reversibility(clone, report, recorder, clock, pending, before, after_up,
                                                     say):
            return
        _contract(clone, report, recorder, clock, pending, say)
    finally:
        if workload is not None:
            time.sleep(options.cooldown_s)
            workload.stop()
            assert report.workload is not None
            report.workload.samples = list(workload.samples)
            mark_own_errors(report.workload.samples, report.phases.get("up", (clock.now(), 0.0))[0])
            _attribute(recorder.records, report.workload.samples)
        recorder.close()
        report.statements = recorder.records


def _analyze(conn: Any, tables: set[tuple[str | None, str]]) -> None:
    """Row estimates for the tables the migrations touch, so a rewrite's size is known (restored or
    never-vacuumed tables have none). Only the clone's statistics change."""
    for schema, name in tables:
        ident = sql.Identifier(schema, name) if schema else sql.Identifier(name)
        row = conn.execute("SELECT c.reltuples FROM pg_class c WHERE c.oid = to_regclass(%s) AND c.relkind = 'r'",
                           (ident.as_string(conn),)).fetchone()
        if row is not None and row[0] < 0:
            conn.execute(sql.SQL("ANALYZE {}").format(ident))


def _up(clone: Settings, report: RehearsalReport, recorder: Recorder, clock: Clock, pending: list[Any],
        say: Notify) -> bool:
    """Apply the pending migrations (under the workload, when there is one); False when they failed."""
    start = clock.now()
    try:
        say(f"applying {len(pending)} migration(s)")
        deploy.migrate(clone, observer=recorder)
        return True
    except Interrupted:
        raise
    except PgshiftError as exc:
        report.reasons.append(Reason("migration-failed", f"The migrations failed on the clone: {exc}"))
        return False
    finally:
        report.phases["up"] = (start, clock.now())


def _start_workload(options: RehearsalOptions, report: RehearsalReport, clock: Clock,
                    pending: list[Any]) -> Workload | None:
    if options.load_rate <= 0:
        return None
    assert report.clone is not None
    with connect(report.clone.url) as conn:
        targets = discover(conn, touched_tables(pending))
    if not targets:
        report.warnings.append("--load: the migrations touch no existing table with rows (that this role can read); "
                               "no workload ran")
        return None
    report.workload = WorkloadReport(options.load_rate, options.load_threads, [t.table for t in targets])
    workload = Workload(report.clone.url, targets, options.load_rate, clock, threads=options.load_threads,
                        max_seconds=options.max_load_s)
    workload.start()
    return workload


def _attribute(records: list[StatementRecord], samples: list[Sample]) -> None:
    """Each statement's worst workload latency among the queries overlapping it, and the workload
    errors it caused. A lock wait, timeout or deadlock counts against every statement running then;
    any other error (a renamed column...) against the latest statement that ended before the query
    did and held ACCESS EXCLUSIVE (else any lock) on its table, else the latest that ended before
    the query started.
    The workload's own errors (:func:`mark_own_errors`) are never counted."""
    blamed: dict[int, list[Sample]] = {}
    for sample in samples:
        if not sample.error or sample.own:
            continue
        for index in _culprits(records, sample):
            blamed.setdefault(index, []).append(sample)
    for index, record in enumerate(records):
        during = [s for s in samples if s.start < record.end and s.end > record.start]
        record.workload_queries = len(during)
        record.worst_latency_ms = round(max((s.latency_ms for s in during), default=0.0), 2) if during else None
        record.workload_errors = len(blamed.get(index, []))
        record.workload_error_messages = error_messages(blamed.get(index, []), limit=3)


def _culprits(records: list[StatementRecord], sample: Sample) -> list[int]:
    during = [i for i, r in enumerate(records) if r.start < sample.end and r.end > sample.start]
    if sample.sqlstate in WAIT_ERRORS:
        return during
    ended = [i for i, r in enumerate(records) if r.end <= sample.end]
    on_table = [i for i in ended if any(lock.relation == sample.table for lock in records[i].locks)]
    # A change of the table's definition (rename, drop, type) holds ACCESS EXCLUSIVE on it.
    altered = [i for i in on_table if any(lock.relation == sample.table and lock.mode == "ACCESS EXCLUSIVE"
                                          for lock in records[i].locks)]
    before = altered or on_table or [i for i, r in enumerate(records) if r.end <= sample.start]
    return [max(before, key=lambda i: records[i].end)] if before else during


def run_test(command: str, clone_url: str, timeout_s: float) -> TestRun:
    started = time.monotonic()
    env = {**os.environ, "DATABASE_URL": clone_url}
    try:
        done = subprocess.run(shlex.split(command), env=env, capture_output=True, text=True, timeout=timeout_s)
        code: int | None = done.returncode
        output = (done.stdout + done.stderr)[-4000:]
    except FileNotFoundError as exc:
        code, output = None, f"cannot run: {exc}"
    except subprocess.TimeoutExpired:
        code, output = None, f"timed out after {timeout_s:.0f}s"
    return TestRun(command, code, round(time.monotonic() - started, 3), output)


def _reverse(clone: Settings, versioned: list[Any], recorder: Recorder) -> None:
    """Undo the applied migrations newest first: down parts for SQL, abort for expanded operations."""
    from pgshift.ops import service

    for migration in reversed(versioned):
        if isinstance(migration, OpsMigration):
            service.abort(clone, version=migration.version, observer=recorder)
        else:
            deploy.rollback(clone, steps=1, observer=recorder)


def _contract(clone: Settings, report: RehearsalReport, recorder: Recorder, clock: Clock, pending: list[Any],
              say: Notify) -> None:
    """Finish the expanded operations migration (one at most is expanded at a time) under the same traffic:
    its contract steps are recorded and judged like the expand's."""
    from pgshift.ops import service

    if not any(isinstance(m, OpsMigration) for m in pending):
        return
    with connect(clone.database_url) as conn:
        expanded = service.expanded(clone, conn)
    for version in expanded:
        _phase(clone, report, recorder, clock, say, "contract", f"contracting {version}",
               "Contracting on the clone failed",
               functools.partial(service.contract, clone, version=version, observer=recorder))


def _reversibility(clone: Settings, report: RehearsalReport, recorder: Recorder, clock: Clock,
                   pending: list[Any], before: catalog.Snapshot, after_up: catalog.Snapshot, say: Notify) -> bool:
    """Roll back, compare, apply again; False when a phase failed (nothing after it can be judged)."""
    versioned = [m for m in pending if m.kind == "versioned"]
    broken = [(m, m.down_error) for m in versioned if m.down_error is not None]
    if broken:  # rolling back would fail at that down part: refused, as `pgshift rollback` refuses it
        where = "; ".join(f"{m.label} ({err})" for m, err in broken)
        report.schema.reversibility = f"refused: the down part does not parse in {where}"
        first = broken[0][1]
        report.reasons.append(Reason("down-parse", f"The down part does not parse, so it cannot be rolled back: "
                                                   f"{where}.", f"{first.file}:{first.line}:{first.column}"))
        return True
    missing = [m.label for m in versioned if m.down is None and isinstance(m, SqlMigration)]
    if missing:
        report.schema.reversibility = f"skipped: no down part in {', '.join(missing)}"
        report.warnings.append(f"reversibility not checked: {', '.join(missing)} has no down part")
        return True
    down = _phase(clone, report, recorder, clock, say, "down", "rolling back", "Rolling back on the clone failed",
                  lambda: _reverse(clone, versioned, recorder))
    if down is None:
        return False
    report.schema.after_down = catalog.fingerprint(down)
    report.schema.down_diff = catalog.diff(before, down)
    report.schema.reversibility = "restored" if not report.schema.down_diff else "differs"
    again = _phase(clone, report, recorder, clock, say, "up-again", "applying again after the rollback",
                   "Applying again after the rollback failed", lambda: deploy.migrate(clone, observer=recorder))
    if again is None:
        return False
    report.schema.after_up_again = catalog.fingerprint(again)
    report.schema.up_again_diff = catalog.diff(after_up, again)
    return True


def _phase(clone: Settings, report: RehearsalReport, recorder: Recorder, clock: Clock, say: Notify, name: str,
           doing: str, failure: str, action: Callable[[], object]) -> catalog.Snapshot | None:
    """Run one phase on the clone, timed and recorded; the catalog after it, or None if it failed."""
    recorder.phase = name
    start = clock.now()
    try:
        say(doing)
        action()
    except Interrupted:
        raise
    except PgshiftError as exc:
        report.reasons.append(Reason(f"{name}-failed", f"{failure}: {exc}"))
        return None
    finally:
        report.phases[name] = (start, clock.now())
    with connect(clone.database_url) as conn:
        return catalog.snapshot(conn, history_schema=clone.history_schema)


def require_pass(report: RehearsalReport) -> None:
    """Raise :class:`RehearsalFailed` naming every reason when the verdict is fail."""
    if not report.passed:
        raise RehearsalFailed("Rehearsal failed: " + " ".join(r.message for r in report.reasons))
