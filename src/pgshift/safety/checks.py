"""``pgshift check``: the pre-migration checklist, every item measured.

Each check returns passed / warning / failed / skipped with the value it measured. ``failed``
items are the required ones: the command exits non-zero when any fails. ``skipped`` means the
check does not apply (nothing configured, not a git repository).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo, sql

from pgshift.config import Settings
from pgshift.db.connect import connect, mask_password, require_url
from pgshift.db.pooler import pooled_session_evidence
from pgshift.db.prepared import how_to_end, quoted_gid
from pgshift.db.sizes import table_bytes
from pgshift.db.standbys import positions_hidden, standbys
from pgshift.errors import PgshiftError
from pgshift.migrations.analysis import StatementFacts, TableName, analyse_all, changed_tables
from pgshift.migrations.model import Migration, OpsMigration
from pgshift.migrations.splitter import first_word
from pgshift.ops.names import qualified, quote_ident
from pgshift.ops.operations.sql import Sql
from pgshift.runner import violations
from pgshift.runner.plan import Problem
from pgshift.runner.violations import look_for, row_rules
from pgshift.safety.backup import latest_verified_backup
from pgshift.safety.hooks import app_version, probe

PASSED, WARNING, FAILED, SKIPPED = "passed", "warning", "failed", "skipped"


@dataclass
class CheckResult:
    name: str
    status: str
    value: str
    detail: list[str] = field(default_factory=list)


@dataclass
class Thresholds:
    long_running_s: float = 60.0  # a transaction open longer than this may block DDL
    max_lag_s: float = 30.0  # replication lag (replay) allowed
    max_lag_bytes: int = 64 * 1024 * 1024
    disk_factor: float = 2.0  # the playbook's "migrations need 2x" rule


@dataclass
class Checklist:
    results: list[CheckResult]

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def ok(self) -> bool:
        return self.count(FAILED) == 0

    def summary(self) -> str:
        extra = f" ({self.count(WARNING)} warnings, {self.count(SKIPPED)} skipped)"
        return f"checklist: {self.count(PASSED)} passed, {self.count(FAILED)} failed" + extra

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "passed": self.count(PASSED), "failed": self.count(FAILED),
                "warnings": self.count(WARNING), "skipped": self.count(SKIPPED),
                "checks": [asdict(r) for r in self.results]}


@dataclass
class _Context:
    settings: Settings
    thresholds: Thresholds
    conn: psycopg.Connection[Any] | None = None
    database: str | None = None
    pending: list[Migration] | None = None
    applied: list[Migration] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    status_error: str | None = None


# -- statement analysis ---------------------------------------------------------------------
def touched_tables(migrations: list[Migration]) -> tuple[set[str], set[str]]:
    """(tables the statements change, tables they rewrite or copy while building)."""
    touched: set[str] = set()
    rewritten: set[str] = set()
    for migration in migrations:
        for statement in migration.up:
            changed, rebuilt = changed_tables(statement.sql)
            touched.update(_qualified(name) for name in changed)
            rewritten.update(_qualified(name) for name in rebuilt)
    return touched, rewritten


def _qualified(name: TableName) -> str:
    return f"{name[0]}.{name[1]}" if name[0] else name[1]


# -- the checks -----------------------------------------------------------------------------
def check_database(ctx: _Context) -> CheckResult:
    try:
        ctx.conn = connect(ctx.settings.database_url, application_name="pgshift-check")
    except PgshiftError as exc:
        return CheckResult("database answers", FAILED, "no connection", [mask_password(exc.message)])
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        ctx.conn.execute("SELECT 1").fetchone()
        times.append((time.perf_counter() - t0) * 1000)
    ctx.database = str(ctx.conn.execute("SELECT current_database()").fetchone()[0])  # type: ignore[index]
    return CheckResult("database answers", PASSED, f"{sorted(times)[1]:.1f} ms round trip")


def check_server_version(ctx: _Context) -> CheckResult:
    assert ctx.conn is not None
    version = ctx.conn.info.parameter_status("server_version") or "?"
    major = ctx.conn.info.server_version // 10000
    if major < 12:
        return CheckResult("server version", WARNING, version, ["PostgreSQL 11 and older are out of support"])
    return CheckResult("server version", PASSED, version)


def check_deploy_session(ctx: _Context) -> CheckResult:
    """What migrate's deploy session will find: one server session, or a transaction-mode pooler it refuses."""
    settings = ctx.settings
    url, setting = settings.deploy_url, settings.deploy_url_setting
    name = "deploy session not pooled"
    try:
        conn = connect(url, application_name=f"{settings.application_name} check", setting=setting)
    except PgshiftError as exc:
        return CheckResult(name, FAILED, f"no connection ({setting})", [mask_password(exc.message)])
    with conn:
        evidence = pooled_session_evidence(conn, str(url), settings.application_name)
    if evidence is None:
        return CheckResult(name, PASSED, f"one server session ({setting})")
    fix = ("point migrate_url at the PostgreSQL server itself" if setting == "migrate_url" else
           "set migrate_url (pgshift.toml or PGSHIFT_MIGRATE_URL) to a direct connection to the server")
    return CheckResult(name, FAILED, f"pooled per transaction ({setting})",
                       [f"{evidence}: migrate, contract and abort will refuse (exit 35); {fix}"])


def check_writable(ctx: _Context) -> CheckResult:
    """Where the migrations run must take writes: not a standby, and no default_transaction_read_only
    (which a database or role can carry), or migrate fails at its first statement."""
    settings = ctx.settings
    url, setting = settings.deploy_url, settings.deploy_url_setting
    name = "server accepts writes"
    if setting == "database_url":
        assert ctx.conn is not None
        return _writable(ctx.conn, name, setting)
    try:
        conn = connect(url, application_name=f"{settings.application_name} check", setting=setting)
    except PgshiftError as exc:
        return CheckResult(name, FAILED, f"no connection ({setting})", [mask_password(exc.message)])
    with conn:
        return _writable(conn, name, setting)


# Where default_transaction_read_only came from (pg_settings.source), and how to lift it there.
# The statement is itself refused in a read-only transaction: it runs in one opened READ WRITE.
_READ_ONLY_FIX = {
    "database": "BEGIN READ WRITE; ALTER DATABASE {database} RESET default_transaction_read_only; COMMIT;",
    "user": "BEGIN READ WRITE; ALTER ROLE {role} RESET default_transaction_read_only; COMMIT;",
    "database user": "BEGIN READ WRITE; ALTER ROLE {role} IN DATABASE {database} RESET default_transaction_read_only; "
                     "COMMIT;",
    "client": "remove it from the connection's options (the URL's options= or PGOPTIONS)",
}


def _writable(conn: psycopg.Connection[Any], name: str, setting: str) -> CheckResult:
    row = conn.execute(
        "SELECT pg_is_in_recovery(), setting, source, current_database(), current_user FROM pg_settings "
        "WHERE name = 'default_transaction_read_only'").fetchone()
    assert row is not None
    recovery, read_only, source, database, role = bool(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4])
    if recovery:
        return CheckResult(name, FAILED, f"a standby ({setting} points at a server in recovery)",
                           [f"migrate would fail at its first write: point {setting} at the primary"])
    if read_only == "on":
        fix = _READ_ONLY_FIX.get(source, "change it in the server's configuration ({source}) and reload").format(
            database=sql.Identifier(database).as_string(conn), role=sql.Identifier(role).as_string(conn),
            source=source)
        return CheckResult(name, FAILED, f"default_transaction_read_only = on (set by: {source})",
                           [f"migrate would fail at its first write (exit 24); if the database is meant to take "
                            f"writes, run: {fix}"])
    return CheckResult(name, PASSED, "a primary, read-write")


def check_backup(ctx: _Context) -> CheckResult:
    settings = ctx.settings
    if settings.backup.provider != "pg_dump":
        return _check_provided_backup(ctx)
    found = latest_verified_backup(settings, settings.backup.max_age, database=ctx.database, conn=ctx.conn)
    if found is not None:
        age = datetime.now(UTC) - found.finished_at
        return CheckResult("recent verified backup", PASSED,
                           f"{found.path.name}, {age.total_seconds() / 3600:.1f} h old, "
                           f"{found.size_bytes / 1e6:.1f} MB")
    status = WARNING if settings.backup.policy == "never" else FAILED
    return CheckResult("recent verified backup", status,
                       f"none verified within backup.max_age = {settings.backup.max_age}",
                       [f"looked in {settings.resolve(settings.backup.directory)} and among the backups the "
                        "history ledger recorded; run `pgshift backup`"])


def _check_provided_backup(ctx: _Context) -> CheckResult:
    """check_backup under a physical backup.provider: its newest completed backup of this cluster, as migrate's
    gate judges it (restore-checked too when backup.restore_check asks)."""
    from pgshift.safety.providers import checked_before, judge, provider_for, restore_check

    settings = ctx.settings
    name = "recent verified backup"
    provider = provider_for(settings)
    assert provider is not None
    try:
        verdict = judge(provider, settings, ctx.conn)
        if verdict.backup is None:
            status = WARNING if settings.backup.policy == "never" else FAILED
            return CheckResult(name, status, f"none within backup.max_age = {settings.backup.max_age} "
                               f"(backup.provider = {provider.name})", [f"{verdict.problem}; {provider.take_hint()}"])
        detail = [f"{verdict.inventory.where}: {len(verdict.inventory.backups)} completed backup(s)"]
        if settings.backup.restore_check:
            detail.append(checked_before(settings, ctx.conn, verdict.backup)
                          or restore_check(settings, provider, verdict.backup).describe())
    except PgshiftError as exc:
        return CheckResult(name, FAILED, f"backup.provider = {provider.name} unusable", [mask_password(str(exc))])
    return CheckResult(name, PASSED, f"{verdict.backup.reference}: {verdict.backup.describe()}", detail)


def check_running_dump(ctx: _Context) -> CheckResult:
    assert ctx.conn is not None
    rows = ctx.conn.execute(
        # Seconds, not an interval: psycopg reads an interval only in IntervalStyle postgres.
        "SELECT pid, datname, extract(epoch FROM now() - backend_start)::float8 FROM pg_stat_activity "
        "WHERE application_name = 'pg_dump' AND pid <> pg_backend_pid()").fetchall()
    if not rows:
        return CheckResult("no pg_dump running", PASSED, "none")
    detail = [f"pid {pid} on {db}, running for "
              + (str(timedelta(seconds=int(age))) if age is not None
                 else "an unknown time (hidden without pg_read_all_stats)")
              for pid, db, age in rows]
    detail.append("pg_dump holds a share lock on every table until it ends; a migration would queue behind it")
    return CheckResult("no pg_dump running", FAILED, f"{len(rows)} running", detail)


def _load_status(ctx: _Context) -> None:
    if ctx.pending is not None or ctx.status_error is not None:
        return
    from pgshift.deploy import status  # only `pgshift check` needs the deploy workflows loaded

    try:
        report = status(ctx.settings)
        ctx.pending = list(report.pending)
        ctx.problems = list(report.problems)
        ctx.applied = list(report.plan.applied)
    except PgshiftError as exc:
        ctx.status_error = mask_password(exc.message)


def check_pending(ctx: _Context) -> CheckResult:
    _load_status(ctx)
    if ctx.pending is None:
        return CheckResult("pending migrations", FAILED, "unknown", [ctx.status_error or ""])
    labels = [m.label for m in ctx.pending]
    return CheckResult("pending migrations", PASSED, f"{len(labels)} pending", labels)


def check_edited(ctx: _Context) -> CheckResult:
    _load_status(ctx)
    if ctx.pending is None:
        return CheckResult("no migration edited after being applied", FAILED, "unknown", [ctx.status_error or ""])
    edited = [p for p in ctx.problems if p.kind == "edited"]
    others = [p for p in ctx.problems if p not in edited]
    if edited:
        return CheckResult("no migration edited after being applied", FAILED, f"{len(edited)} edited",
                           [p.detail for p in edited])
    if others:
        return CheckResult("no migration edited after being applied", WARNING, "none edited",
                           [p.detail for p in others])
    return CheckResult("no migration edited after being applied", PASSED, "none")


def check_lint(ctx: _Context) -> CheckResult:
    _load_status(ctx)
    name = "lint passes lint.fail_level"
    if ctx.pending is None:
        return CheckResult(name, FAILED, "unknown", [ctx.status_error or ""])
    if not ctx.pending:
        return CheckResult(name, PASSED, "nothing pending to lint")
    from pgshift.lint.context import runner_timeouts
    from pgshift.lint.live import lint_pending, starting_schema  # only this check needs the linter loaded
    from pgshift.lint.model import lint_verdict

    assert ctx.conn is not None  # the database checks run only once connected
    settings = ctx.settings
    # As the migrate gate judges them: against this server's table sizes, by the same policy.
    report = lint_pending(ctx.conn, settings.lint, ctx.pending, ctx.applied, history_schema=settings.history_schema,
                          schema=starting_schema(settings), runner_sets=runner_timeouts(settings))
    verdict = lint_verdict(report, settings.lint.fail_level)
    counts = f"{report.count('error')} error(s), {report.count('warning')} warning(s), {report.count('note')} note(s)"
    if verdict.failed:
        detail = [f"{f.file}:{f.line}: {f.rule} {f.name}: {f.message}" for f in verdict.blocking]
        detail += [f"{p.file}:{p.line}:{p.column}: {p.message}" for p in verdict.parse_errors]
        return CheckResult(name, FAILED, f"{len(detail)} at or above '{verdict.fail_level}' ({counts})", detail[:20])
    return CheckResult(name, PASSED, f"none at or above '{verdict.fail_level}' ({counts})")


_NOT_VALID = re.compile(r"\bnot\s+valid\b", re.I)
# Statements after which a table's rows may differ from the ones there now.
_ROW_WRITERS = frozenset({"UpdateStmt", "InsertStmt", "DeleteStmt", "MergeStmt", "CopyStmt", "TruncateStmt"})


def check_existing_rows(ctx: _Context) -> CheckResult:
    """Rows already in a table that a constraint a pending migration adds or validates would reject (a
    CHECK, a NOT NULL, a unique index or key, a foreign key): that migration would fail on them. Where an
    earlier pending statement changes the table's rows first (a backfill before its NOT NULL), they are a
    warning."""
    name = "existing rows meet the pending constraints"
    _load_status(ctx)
    if ctx.pending is None:
        return CheckResult(name, SKIPPED, "pending migrations unknown", [ctx.status_error or ""])
    assert ctx.conn is not None
    budget = ctx.settings.check.rows_budget
    if not budget.ms:
        return CheckResult(name, SKIPPED, "no rows read", ["check.rows_budget = 0"])
    failed: list[str] = []
    warned: list[str] = []
    skipped: list[str] = []
    checked = 0
    earlier: list[str] = []  # pending ALTER TABLEs adding a constraint NOT VALID, validated by a later one
    created: set[str] = set()
    changed_by: dict[str, str] = {}  # table -> where a pending statement first changes its rows
    deadline = time.monotonic() + budget.seconds  # each lookup reads a table: the item has a budget
    for migration in ctx.pending:
        if isinstance(migration, OpsMigration):  # operations change no existing column's values; SQL of its own may
            for op in migration.ops.operations:
                if isinstance(op, Sql):
                    _mark_rows_changed(analyse_all(op.up), migration.label, created, changed_by)
            continue
        for statement in migration.up:
            where = f"{statement.file}:{statement.line}"
            if first_word(statement.sql) == "ALTER" and _NOT_VALID.search(statement.sql):
                earlier.append(statement.sql)  # only these: a data migration's text is not held
            facts = analyse_all(statement.sql)
            # Only a statement the one analysis says reads rows while it holds its lock can check them:
            # the others (a data migration's INSERTs) are not parsed again for their rules.
            for rule in row_rules(statement.sql, earlier) if any(f.scanned for f in facts) else ():
                if rule.table in created:
                    continue  # created by a pending migration: its rows are not there yet
                left_ms = int((deadline - time.monotonic()) * 1000)
                if left_ms < 1000:
                    skipped.append(f"{where}: {rule.shown} of {rule.name} not checked: the lookups before it "
                                   f"used check.rows_budget ({budget})")
                    continue
                lookup = look_for(ctx.conn, rule, limit_ms=min(left_ms, violations.LOOKUP_TIMEOUT_MS))
                found = lookup.found
                if lookup.skipped:
                    skipped.append(f"{where}: {rule.shown} of {rule.name} not checked: {lookup.skipped}")
                    continue
                checked += 1
                if found is None:
                    continue
                first = changed_by.get(rule.table)
                if found.count is None or first is not None:
                    after = f" (its rows change first at {first})" if first is not None else ""
                    warned.append(f"{where}: {found.sentence()}{after}")
                else:
                    failed.append(f"{where}: {found.sentence()}")
            _mark_rows_changed(facts, where, created, changed_by)
    detail = failed + warned + skipped
    if failed:
        return CheckResult(name, FAILED, f"{len(failed)} of {checked} would fail on rows already there", detail)
    if warned:
        return CheckResult(name, WARNING, f"{len(warned)} of {checked} violated now", detail)
    if not checked and not skipped:
        return CheckResult(name, PASSED, "no pending constraint checks rows already there")
    return CheckResult(name, PASSED, f"{checked} constraint(s) checked against the rows there now", skipped)


def _mark_rows_changed(found: tuple[StatementFacts, ...], where: str, created: set[str],
                       changed_by: dict[str, str]) -> None:
    """Note the tables the statements of ``found`` create, and those whose rows they change (first ``where``)."""
    for facts in found:
        tables = {table for _schema, table in facts.changed}
        if facts.kind in ("CreateStmt", "CreateTableAsStmt"):
            created |= tables
        if facts.kind in _ROW_WRITERS or facts.rewritten:
            for table in tables:
                changed_by.setdefault(table, where)


def _data_directory(ctx: _Context) -> Path | None:
    """The data directory when the server runs on this machine and we can see it."""
    assert ctx.conn is not None
    host = str(conninfo.conninfo_to_dict(ctx.settings.database_url or "").get("host") or "/")
    if not (host.startswith("/") or host in ("localhost", "127.0.0.1", "::1")):
        return None
    try:
        row = ctx.conn.execute("SELECT current_setting('data_directory')").fetchone()
    except psycopg.Error:
        return None
    path = Path(str(row[0])) if row else None
    return path if path is not None and path.exists() else None


def check_disk(ctx: _Context) -> CheckResult:
    assert ctx.conn is not None
    _load_status(ctx)
    _touched, rewritten = touched_tables(ctx.pending or [])
    need = 0
    for name in sorted(rewritten):
        need += table_bytes(ctx.conn, name)
    need = int(need * ctx.thresholds.disk_factor)
    datadir = _data_directory(ctx)
    what = f"need {need / 1e6:.1f} MB ({ctx.thresholds.disk_factor:g}x the {len(rewritten)} rewritten table(s))"
    if datadir is None:
        return CheckResult("free disk space", WARNING, f"{what}, free space unknown",
                           ["the server is not local (or its data_directory is not visible): cannot measure"])
    free = shutil.disk_usage(datadir).free
    status = PASSED if free >= need else FAILED
    return CheckResult("free disk space", status, f"{free / 1e9:.1f} GB free on {datadir}; {what}",
                       sorted(rewritten))


# The relations a lock holder holds, each as [schema, name, the name as the server prints it, whether a
# bare name finds it on the search path].
RELATIONS = ("coalesce(array_agg(DISTINCT ARRAY[n.nspname::text, c.relname::text, c.oid::regclass::text, "
             "pg_table_is_visible(c.oid)::text]) FILTER (WHERE c.oid IS NOT NULL), '{}')")


def _held(relations: list[list[str]], touched: set[str]) -> list[str]:
    """The relations of ``relations`` that ``touched`` (names as the migrations write them, unquoted:
    ``schema.name``, or a bare ``name``, which is the table the search path finds) names."""
    return sorted(shown for schema, name, shown, visible in relations
                  if f"{schema}.{name}" in touched or (visible == "true" and name in touched))


def _prepared_transactions(conn: psycopg.Connection[Any], wanted: set[str], blocking: list[str]) -> list[str]:
    """Prepared transactions of this database (db/prepared.py): the sessions above miss them. One holding a
    lock on a table the pending migrations touch is added to ``blocking``; the others are returned."""
    rows = conn.execute(
        f"""
        SELECT p.gid, p.owner::text, extract(epoch FROM now() - p.prepared)::float8, {RELATIONS}
        FROM pg_prepared_xacts p
        LEFT JOIN pg_locks x ON x.locktype = 'transactionid' AND x.pid IS NULL AND x.transactionid = p.transaction
        LEFT JOIN pg_locks l ON l.pid IS NULL AND l.locktype = 'relation'
                            AND l.virtualtransaction = x.virtualtransaction
                            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        LEFT JOIN pg_class c ON c.oid = l.relation LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE p.database = current_database()
        GROUP BY 1, 2, 3 ORDER BY 3 DESC
        """).fetchall()
    others: list[str] = []
    for gid, owner, secs, relations in rows:
        ends = f"{how_to_end(gid)} ends it"
        held = _held(relations, wanted)
        line = f"prepared transaction {quoted_gid(gid)} of role {owner}, prepared {secs:.0f}s ago"
        if held:
            blocking.append(f"{line}, holds locks on {', '.join(held)} ({ends})")
        else:
            others.append(f"{line}: it keeps its locks and holds back vacuum's cleanup until ended ({ends})")
    return others


def check_sessions(ctx: _Context) -> CheckResult:
    assert ctx.conn is not None
    _load_status(ctx)
    touched, _ = touched_tables(ctx.pending or [])
    # Without pg_read_all_stats, another role's session shows no state, age or query (backend_type
    # NULL); pg_locks still shows what it holds, so it is judged by its locks alone.
    rows = ctx.conn.execute(
        f"""
        SELECT a.pid, a.state, extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::float8,
               left(a.query, 60), a.usename,
               {RELATIONS}
        FROM pg_stat_activity a LEFT JOIN pg_locks l ON l.pid = a.pid AND l.database = (
            SELECT oid FROM pg_database WHERE datname = current_database())
        LEFT JOIN pg_class c ON c.oid = l.relation LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
          AND ((a.backend_type = 'client backend'
                AND (a.state LIKE 'idle in transaction%%'
                     OR (a.state = 'active'
                         AND now() - coalesce(a.xact_start, a.query_start) > %s * interval '1 second')))
               OR (a.backend_type IS NULL AND a.usesysid IS NOT NULL))
        GROUP BY 1, 2, 3, 4, 5
        """, (ctx.thresholds.long_running_s,)).fetchall()
    blocking: list[str] = []
    other: list[str] = []
    hidden = 0
    for pid, state, secs, query, user, relations in rows:
        held = _held(relations, touched)
        if state is None:
            hidden += 1
            if held:
                blocking.append(f"pid {pid} of role {user} (state and age hidden) holds locks on {', '.join(held)}")
            continue
        line = f"pid {pid} {state} for {secs:.0f}s: {query!r}"
        if held:
            blocking.append(f"{line} (holds locks on {', '.join(held)})")
        elif secs >= ctx.thresholds.long_running_s:
            other.append(line)
    long_running = len(other)
    if hidden:
        other.append(f"role {ctx.conn.info.user} lacks pg_read_all_stats (part of pg_monitor), so the state and "
                     f"transaction age of {hidden} session(s) of other roles are hidden: only the locks they hold "
                     "were checked; a superuser or the service's admin role can GRANT pg_read_all_stats to it")
    leftover = _prepared_transactions(ctx.conn, touched, blocking)
    other += leftover
    if blocking:
        return CheckResult("no sessions blocking DDL", FAILED, f"{len(blocking)} blocking", blocking + other)
    if other:
        value = f"{long_running} long-running" + (f", {hidden} not inspectable" if hidden else "") + (
            f", {len(leftover)} prepared transaction(s)" if leftover else "")
        return CheckResult("no sessions blocking DDL", WARNING, value, other)
    return CheckResult("no sessions blocking DDL", PASSED, "none")


def check_replication(ctx: _Context) -> CheckResult:
    assert ctx.conn is not None
    found = standbys(ctx.conn)
    urls = ctx.settings.standby_urls
    if not found and not urls:
        return CheckResult("replication lag", PASSED, "no standbys")
    t = ctx.thresholds
    detail, worst = [], PASSED
    hidden = positions_hidden(ctx.conn) if found else None
    for s in found:
        secs, behind = s.lag_s or 0.0, s.lag_bytes or 0
        bad = hidden is None and (s.state != "streaming" or secs > t.max_lag_s or behind > t.max_lag_bytes)
        worst = FAILED if bad else worst
        # The primary sees a standby's xmin only when it sends one: hot_standby_feedback = on.
        feedback = "on (it reports an xmin)" if s.xmin is not None else "off (it reports no xmin)"
        detail.append(f"{s.label}: {s.state}, {secs:.1f}s and {behind / 1e6:.1f} MB ({behind} bytes) behind, "
                      f"hot_standby_feedback {feedback}")
    if hidden is not None:
        worst = WARNING
        detail.append(f"the role {hidden} lacks pg_read_all_stats (part of pg_monitor), so the standbys' state, "
                      "positions, lags and xmin are hidden from it: the figures above are not measured; GRANT "
                      "pg_monitor to it")
    if urls and not found:
        worst = FAILED
        detail.append(f"standby_urls names {len(urls)} standby(s), but none streams from this server now")
    for url in urls:
        line, fine = _standby_settings(ctx, url)
        detail.append(line)
        worst = worst if fine or worst == FAILED else WARNING
    return CheckResult("replication lag", worst, f"{len(found)} standby(s)", detail)


_ON_STANDBY = """
SELECT pg_is_in_recovery(), current_setting('hot_standby_feedback'), current_setting('max_standby_streaming_delay'),
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END,
       CASE WHEN pg_is_in_recovery()
            THEN pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint END
"""


def _standby_connection(ctx: _Context, url: str) -> psycopg.Connection[Any]:
    """The standby, in the primary's database (table oids are the same there, it is a physical copy)."""
    params = conninfo.conninfo_to_dict(url)
    params["dbname"] = ctx.database or params.get("dbname")
    return connect(conninfo.make_conninfo(**params), application_name="pgshift-check")  # type: ignore[arg-type]


def _standby_settings(ctx: _Context, url: str) -> tuple[str, bool]:
    """What the standby at ``url`` says of itself, and whether that is fine (reachable, a standby, replaying)."""
    where = f"standby {mask_password(url)}"
    try:
        with _standby_connection(ctx, url) as conn:
            row = conn.execute(_ON_STANDBY).fetchone()
    except (PgshiftError, psycopg.Error) as exc:
        return f"{where} (standby_urls): cannot connect: {mask_password(str(exc))}", False
    assert row is not None
    recovery, feedback, delay, paused, unreplayed = row
    if not recovery:
        return f"{where} (standby_urls) is not a standby: it is not in recovery", False
    return (f"{where}: hot_standby_feedback {feedback}, max_standby_streaming_delay {delay}, replay "
            f"{'PAUSED (pg_wal_replay_resume() resumes it)' if paused else 'running'}, {unreplayed or 0} bytes "
            "received and not yet replayed"), not paused


def access_exclusive_tables(migrations: list[Migration],
                            conn: psycopg.Connection[Any] | None = None) -> dict[str, list[str]]:
    """Tables (as written) an ACCESS EXCLUSIVE lock of a pending migration's statement is taken on, each with
    the migrations and lines that take it (an index's lock is on its table: resolved on the server). With
    ``conn``, an operations migration's expand steps too, planned from the live catalog as expand would."""
    found: dict[str, list[str]] = {}

    def add(text: str, where: str) -> None:
        for facts in analyse_all(text):
            for lock in facts.locks:
                if lock.level == "ACCESS EXCLUSIVE" and lock.relation[1]:
                    found.setdefault(_qualified(lock.relation), []).append(where)

    for migration in migrations:
        for statement in migration.up:
            add(statement.sql, f"{migration.label} ({statement.where})")
        if isinstance(migration, OpsMigration) and conn is not None:
            for label, text in _expand_statements(conn, migration):
                add(text, f"{migration.label} (expand step '{label}')")
    return found


def _expand_statements(conn: psycopg.Connection[Any], migration: OpsMigration) -> list[tuple[str, str]]:
    """(step label, SQL) of an operations migration's expand; none when it cannot be planned yet (its
    table is created by an earlier pending migration)."""
    from pgshift.ops.plan import capture, plan_phases  # only an operations migration needs the planner loaded

    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            captured = capture(conn, migration.ops)
        steps = plan_phases(migration.ops, migration.version, captured).expand
        return [(step.label, statement.as_string(conn)) for step in steps for statement in step.statements]
    except (PgshiftError, psycopg.Error):
        return []


# Sessions of the standby holding a lock on the given relations (by oid; an index's lock is on its table).
_STANDBY_READERS = r"""
WITH target AS (
    SELECT t.name, coalesce(i.indrelid, c.oid) AS oid
    FROM unnest(%s::text[]) t(name) JOIN pg_class c ON c.oid = to_regclass(t.name)
    LEFT JOIN pg_index i ON i.indexrelid = c.oid)
SELECT a.pid, t.name, extract(epoch FROM clock_timestamp() - coalesce(a.xact_start, a.query_start))::float8,
       left(regexp_replace(a.query, '\s+', ' ', 'g'), 80), a.state
FROM pg_locks l JOIN target t ON t.oid = l.relation
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND a.pid <> pg_backend_pid()
GROUP BY 1, 2, 3, 4, 5 ORDER BY 3 DESC
"""


def _replay_outcome(delay: str, delay_ms: int) -> str:
    if delay_ms < 0:
        return ("waits for it as long as it runs (max_standby_streaming_delay = -1): replay stops meanwhile and "
                "every reader of that standby falls behind")
    if delay_ms == 0:
        return "cancels it at once (max_standby_streaming_delay = 0)"
    return (f"waits for it up to max_standby_streaming_delay = {delay} (replay stops meanwhile), then cancels "
            "it")


def check_standby_queries(ctx: _Context) -> CheckResult:
    """Standby queries the ACCESS EXCLUSIVE lock of a pending migration, replayed there, would cancel or stall."""
    assert ctx.conn is not None
    name = "standby queries safe from replayed locks"
    _load_status(ctx)
    streaming = standbys(ctx.conn)
    urls = ctx.settings.standby_urls
    if not streaming and not urls:
        return CheckResult(name, PASSED, "no standbys")
    tables = access_exclusive_tables(ctx.pending or [], ctx.conn)
    if not tables:
        return CheckResult(name, PASSED, "no pending ACCESS EXCLUSIVE lock")
    locked = ", ".join(sorted(tables))
    if not urls:
        return CheckResult(name, WARNING, f"{len(streaming)} standby(s) not inspectable", [
            f"pending migrations take ACCESS EXCLUSIVE locks on {locked}; each is replayed on the standbys, where it "
            "cancels or waits for their queries on those tables (max_standby_streaming_delay)",
            "set standby_urls to the standbys' connection URLs to check their queries and settings"])
    warnings, detail = [], []
    for url in urls:
        where = f"standby {mask_password(url)}"
        try:
            with _standby_connection(ctx, url) as conn:
                delay = str(conn.execute("SELECT current_setting('max_standby_streaming_delay')").fetchone()[0])  # type: ignore[index]
                delay_ms = int(conn.execute(  # type: ignore[index]
                    "SELECT setting::int FROM pg_settings WHERE name = 'max_standby_streaming_delay'").fetchone()[0])
                readers = conn.execute(_STANDBY_READERS, (sorted(tables),)).fetchall()
        except (PgshiftError, psycopg.Error) as exc:
            warnings.append(f"{where}: cannot check its queries: {mask_password(str(exc))}")
            continue
        detail.append(f"{where}: {len(readers)} session(s) on {locked}, max_standby_streaming_delay {delay}")
        for pid, table, secs, query, state in readers:
            takers = "; ".join(tables[table])
            warnings.append(
                f"{where}: pid {pid} ({state}, {secs:.0f}s) holds a lock on {table}: {query!r}. Replaying the "
                f"ACCESS EXCLUSIVE lock of {takers} there {_replay_outcome(delay, delay_ms)}")
    if warnings:
        return CheckResult(name, WARNING, f"{len(warnings)} at risk", warnings + detail)
    return CheckResult(name, PASSED, f"no standby session on {locked}", detail)


def check_invalid_indexes(ctx: _Context) -> CheckResult:
    assert ctx.conn is not None
    rows = ctx.conn.execute(
        "SELECT i.indexrelid::regclass::text, i.indrelid::regclass::text FROM pg_index i "
        "WHERE NOT i.indisvalid ORDER BY 1").fetchall()
    if not rows:
        return CheckResult("no INVALID indexes", PASSED, "none")
    return CheckResult("no INVALID indexes", FAILED, f"{len(rows)} invalid",
                       [f"{idx} on {tbl} (a failed CREATE INDEX CONCURRENTLY; drop and rebuild it)"
                        for idx, tbl in rows])


def _pending_tables(migrations: list[Migration]) -> list[str]:
    """Every table the pending migrations change (SQL statements from the one statement analysis; an
    operations file's operations by their table), as to_regclass reads them."""
    touched: set[str] = set()
    for migration in migrations:
        for statement in migration.up:
            changed, _ = changed_tables(statement.sql)
            touched.update(".".join(quote_ident(part) for part in name if part) for name in changed if name[1])
        if isinstance(migration, OpsMigration):
            touched.update(f"{quote_ident(migration.ops.schema)}.{quote_ident(op.target)}"
                           for op in migration.ops.operations if op.target)
    return sorted(touched)


def check_statistics(ctx: _Context) -> CheckResult:
    """Stale planner statistics on a table a pending migration changes: its own statements (a backfill's
    UPDATE, an INSERT ... SELECT) are planned from them, and the lint gate sizes the table by reltuples.
    Stale is what autovacuum would analyse now: more rows changed since the last ANALYZE than
    autovacuum_analyze_threshold + autovacuum_analyze_scale_factor x rows."""
    assert ctx.conn is not None
    name = "table statistics fresh"
    _load_status(ctx)
    if ctx.pending is None:
        return CheckResult(name, SKIPPED, "pending migrations unknown", [ctx.status_error or ""])
    tables = _pending_tables(ctx.pending)
    if not tables:
        return CheckResult(name, PASSED, "no existing table changed by a pending migration")
    rows = ctx.conn.execute(
        """
        SELECT DISTINCT ON (c.oid) n.nspname, c.relname, greatest(c.reltuples, 0)::float8, s.n_mod_since_analyze,
               greatest(s.last_analyze, s.last_autoanalyze),
               current_setting('autovacuum_analyze_threshold')::float8
               + current_setting('autovacuum_analyze_scale_factor')::float8 * greatest(c.reltuples, 0)
        FROM unnest(%s::text[]) AS wanted(name)
        JOIN pg_class c ON c.oid = to_regclass(wanted.name) AND c.relkind IN ('r', 'p', 'm')
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_stat_all_tables s ON s.relid = c.oid
        ORDER BY c.oid
        """, (tables,)).fetchall()
    stale = []
    for schema, table, estimate, changed, analysed, threshold in rows:
        if changed is None or changed <= threshold:
            continue
        shown = qualified(schema, table)
        when = f"since its last ANALYZE at {analysed:%Y-%m-%d %H:%M:%S %Z}" if analysed else "and never analysed"
        stale.append(f"{shown}: {changed} rows changed {when}, against {estimate:.0f} rows estimated; run "
                     f"`ANALYZE {shown}` before migrating")
    if stale:
        return CheckResult(name, WARNING, f"{len(stale)} of {len(rows)} stale", sorted(stale))
    return CheckResult(name, PASSED, f"{len(rows)} table(s) analysed recently enough")


def check_app_version(ctx: _Context) -> CheckResult:
    app = ctx.settings.app
    file = ctx.settings.resolve(app.version_file) if app.version_file else None
    if not app.version_command and file is None:
        return CheckResult("application version", SKIPPED, "not configured",
                           ["set app.version_command or app.version_file"])
    version, source = app_version(app.version_command, file)
    if version is None:
        return CheckResult("application version", FAILED, "unknown", [source])
    return CheckResult("application version", PASSED, version, [f"from {source}"])


def check_health(ctx: _Context) -> CheckResult:
    url = ctx.settings.app.health_url
    if not url:
        return CheckResult("application health URL", SKIPPED, "not configured", ["set app.health_url"])
    t0 = time.monotonic()
    status, error = probe(url, timeout=min(5.0, ctx.settings.app.health_timeout.seconds))
    elapsed = (time.monotonic() - t0) * 1000
    if status is not None and 200 <= status < 300:
        return CheckResult("application health URL", PASSED, f"HTTP {status} in {elapsed:.0f} ms", [url])
    return CheckResult("application health URL", FAILED, error or f"HTTP {status}", [url])


def check_git(ctx: _Context) -> CheckResult:
    git = shutil.which("git")
    base = ctx.settings.base_dir
    if git is None:
        return CheckResult("git working tree clean", SKIPPED, "git not installed")
    inside = subprocess.run([git, "-C", str(base), "rev-parse", "--is-inside-work-tree"],
                            capture_output=True, text=True, check=False)
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return CheckResult("git working tree clean", SKIPPED, "not a git repository", [str(base)])
    out = subprocess.run([git, "-C", str(base), "status", "--porcelain"], capture_output=True, text=True,
                         check=False, env={**os.environ, "LC_ALL": "C"})
    changed = [ln for ln in out.stdout.splitlines() if ln.strip()]
    if changed:
        return CheckResult("git working tree clean", FAILED, f"{len(changed)} uncommitted change(s)", changed[:20])
    return CheckResult("git working tree clean", PASSED, "clean")


_DB_CHECKS: list[Callable[[_Context], CheckResult]] = [
    check_server_version, check_writable, check_backup, check_running_dump, check_pending, check_edited, check_lint,
    check_existing_rows, check_disk, check_sessions, check_replication, check_standby_queries, check_invalid_indexes,
    check_statistics, check_deploy_session,
]
_OTHER_CHECKS: list[Callable[[_Context], CheckResult]] = [check_app_version, check_health, check_git]


def run_checks(settings: Settings, thresholds: Thresholds | None = None) -> Checklist:
    """Run every check; a check that crashes is reported as failed, never hidden."""
    ctx = _Context(settings, thresholds or Thresholds())
    results = [check_database(ctx)]
    try:
        for check in _DB_CHECKS if ctx.conn is not None else []:
            results.append(_safely(check, ctx))
    finally:
        if ctx.conn is not None:
            ctx.conn.close()
    results.extend(_safely(check, ctx) for check in _OTHER_CHECKS)
    return Checklist(results)


def check(settings: Settings, thresholds: Thresholds | None = None) -> Checklist:
    """`pgshift check`: :func:`run_checks` on the configured database, which it requires."""
    require_url(settings.database_url)
    return run_checks(settings, thresholds)


def _safely(check: Callable[[_Context], CheckResult], ctx: _Context) -> CheckResult:
    try:
        return check(ctx)
    except (PgshiftError, psycopg.Error, OSError) as exc:
        name = check.__name__.removeprefix("check_").replace("_", " ")
        return CheckResult(name, FAILED, "check could not run", [mask_password(str(exc))])
