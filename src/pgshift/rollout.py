"""`pgshift deploy`: the playbook's deployment flow as one command, never stopping the application.

check → backup → lint → migrate (expand, watched) → app hook → health → watch window → deferred
destructive migrations → contract (now, or after the soak) → report with the runbook that undoes it.

A failure or a threshold breach after the schema changed runs ``deploy.on_failure`` ("abort"): the
application is rolled back first (``deploy.rollback_app_command``: the old version works with the
expanded schema, the new one may not work with the original), then what this deploy applied is undone
newest first (an expand is aborted, a SQL migration runs its down part). Every step is an event in the
ledger (``deploy-started``, ``deploy-step``, ``deploy-finished``), so ``--resume`` continues (or, with
``roll_back``, undoes) a deploy that was killed, and a second deploy is refused while one runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from pgshift.config import Settings, check_restore_confirmation
from pgshift.db.connect import mask_password, require_url
from pgshift.db.history import History
from pgshift.db.lock import AdvisoryLock
from pgshift.db.session import load, open_connection
from pgshift.deploy import MigrateReport, migrate, rollback, status
from pgshift.errors import MigrationFailed, PgshiftError
from pgshift.migrations.model import Migration, OpsMigration, SqlMigration, Statement
from pgshift.runner.engine import StatementObserver
from pgshift.runner.gate import MigrateChecks, apply_backup_policy
from pgshift.safety.hooks import probe
from pgshift.units import Duration
from pgshift.watch import Sample, WatchBreached, Watcher

Notify = Callable[[str], None]
STEPS = ("check", "backup", "lint", "migrate", "app", "health", "watch", "deferred", "contract")
# Steps before these change nothing: a failure there needs no undo.
_CHANGING = ("migrate", "app", "health", "watch", "deferred", "contract")
_OUTPUT_LINES = 200  # of each hook, kept in the report and the ledger


# -- errors --------------------------------------------------------------------------------
class DeployError(PgshiftError):
    """A deploy step failed after the schema changed (a migration, a contract); the failure policy ran, and
    the report says what it did. The base of the deploy's other errors."""

    code = "deploy-failed"
    exit_code = 47

    report: DeployReport | None = None
    output: tuple[str, ...] = ()  # a failed hook's output


class DeployCheckFailed(DeployError):
    """A required item of the pre-deploy checklist (`pgshift check`) failed; nothing was changed."""

    code = "deploy-check"
    exit_code = 40


class HookNotFound(DeployError):
    """The deploy.app_command (or rollback_app_command, health_command) names a program that does not exist."""

    code = "deploy-hook-not-found"
    exit_code = 42


class HookTimedOut(DeployError):
    """A deploy hook ran longer than deploy.app_timeout and was killed."""

    code = "deploy-hook-timeout"
    exit_code = 43


class HookFailed(DeployError):
    """A deploy hook exited with a non-zero status."""

    code = "deploy-hook-failed"
    exit_code = 44


class HealthCheckFailed(DeployError):
    """The application's health URL (or deploy.health_command) was unreachable or unhealthy within its timeout."""

    code = "deploy-unhealthy"
    exit_code = 45


class DeployBreached(DeployError):
    """A [watch] threshold was crossed while the deploy migrated or during its watch window."""

    code = "deploy-breach"
    exit_code = 46


class DeployStateError(DeployError):
    """--resume with no interrupted deploy, or a new deploy while an interrupted one waits for --resume."""

    code = "deploy-state"
    exit_code = 48


class RollbackIncomplete(DeployError):
    """The failure policy could not undo everything this deploy applied; the message says what is left."""

    code = "deploy-rollback-incomplete"
    exit_code = 49


# -- the report ----------------------------------------------------------------------------
@dataclass
class StepRecord:
    name: str
    state: str  # done, failed, skipped
    started_at: str
    finished_at: str | None = None
    detail: str = ""
    output: list[str] = field(default_factory=list)  # a hook's output (its last lines)


@dataclass
class RunbookStep:
    """One line of the runbook: a shell command (the app hook), or a pgshift command."""

    kind: str  # "shell" or "pgshift"
    command: str
    why: str


@dataclass
class DeployReport:
    deploy_id: str
    outcome: str = "running"  # deployed, rolled back, failed, planned, nothing to do
    dry_run: bool = False
    resumed: bool = False
    plan: list[str] = field(default_factory=list)
    batch: list[str] = field(default_factory=list)  # versions applied before the app (expand for .ops)
    deferred: list[str] = field(default_factory=list)  # destructive SQL migrations run after the watch window
    steps: list[StepRecord] = field(default_factory=list)
    backup: str | None = None
    watch: dict[str, Any] = field(default_factory=dict)  # samples, peaks, breach of the watched steps
    contract_due: dict[str, str] = field(default_factory=dict)  # version -> due after (ISO)
    contracted: list[str] = field(default_factory=list)
    undo: list[str] = field(default_factory=list)  # what the failure policy did
    left: list[str] = field(default_factory=list)  # what the undo could not take back (also in ``undo``)
    # deploy.on_failure = "restore": the backup, the database kept as it was, tables whose row count changed
    restored: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    runbook: list[RunbookStep] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def runbook_text(self) -> str:
        lines = [f"# undo deploy {self.deploy_id} by hand, in this order (DATABASE_URL as for the deploy)"]
        for step in self.runbook:
            lines += [f"# {step.why}", step.command]
        return "\n".join(lines)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- hooks ---------------------------------------------------------------------------------
@dataclass
class HookRun:
    returncode: int | None  # None: killed at its timeout
    output: list[str]
    seconds: float


def run_shell_hook(command: str, timeout_s: float, cwd: str) -> HookRun:
    """``command`` through the shell, in its own process group (killed whole at the timeout). Output goes
    to a file, not a pipe, so a server the hook starts in the background cannot keep us waiting."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(command, shell=True, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        out.seek(0)
        lines = [line.rstrip() for line in out.read().splitlines() if line.strip()]
    return HookRun(code, lines[-_OUTPUT_LINES:], time.monotonic() - started)


def _hook(setting: str, command: str, timeout: Duration, cwd: str) -> HookRun:
    """Run a hook; raise the error that names it when it is missing, hangs or fails."""
    run = run_shell_hook(command, timeout.seconds, cwd)
    tail = " | ".join(run.output[-3:]) or "no output"
    error: DeployError | None = None
    if run.returncode is None:
        error = HookTimedOut(f"{setting} ({command!r}) was still running after deploy.app_timeout = {timeout} and was "
                           f"killed (its whole process group); its last output: {tail}.",
                           hint="make the hook finish within deploy.app_timeout (hooks must be idempotent), or "
                           "raise deploy.app_timeout.")
    elif run.returncode in (126, 127):
        error = HookNotFound(f"{setting} ({command!r}) could not be run: the shell exited {run.returncode} "
                           f"(command not found or not executable): {tail}.",
                           hint=f"fix {setting} in pgshift.toml; commands run through /bin/sh in {cwd}.")
    elif run.returncode != 0:
        error = HookFailed(f"{setting} ({command!r}) exited with {run.returncode}: {tail}.",
                           hint="its output is in the report; fix the cause and run `pgshift deploy` again "
                           "(hooks must be idempotent).")
    if error is not None:
        error.output = tuple(run.output)
        raise error
    return run


# -- the watcher in a thread ---------------------------------------------------------------
class _StopOnBreach:
    """The step engine's statement observer during a watched migrate: after a breach, the next statement
    (the next step, or the next statement of a step) raises before it runs, and a statement running when the
    breach is seen is cancelled (pg_cancel_backend), so its transaction rolls back. Either way the engine's
    owner records the migration failed with this message, and a rerun continues where it stopped."""

    def __init__(self, inner: StatementObserver | None = None) -> None:
        self.inner = inner
        self.breach: str | None = None
        self.stopped: str | None = None  # what was stopped, for the WatchBreached message
        self._lock = threading.Lock()
        self._running: tuple[int, str] | None = None  # (backend pid, where) of the statement in flight
        self._cancelled: str | None = None

    def breached(self, reason: str, conn: psycopg.Connection[Any]) -> None:
        """From the watcher's thread, on its own connection."""
        with self._lock:
            if self.breach is not None:
                return
            self.breach = reason
            if self._running is not None:
                pid, where = self._running
                try:
                    conn.execute("SELECT pg_cancel_backend(%s)", (pid,))
                except psycopg.Error:
                    return  # not allowed: the statement finishes, and the next one stops
                self._cancelled = where

    def before(self, conn: psycopg.Connection[Any], migration: Migration, stmt: Statement) -> None:
        with self._lock:
            if self.breach is not None:
                self.stopped = f"{migration.label} before {stmt.where} (nothing of that step ran)"
                raise MigrationFailed(f"{stmt.where}: {migration.label} was stopped by the watcher before this "
                                      f"statement: {self.breach}.", version=migration.version)
            self._running = (conn.info.backend_pid, stmt.where)
        if self.inner is not None:
            self.inner.before(conn, migration, stmt)

    def after(self, conn: psycopg.Connection[Any], migration: Migration, stmt: Statement,
              error: BaseException | None) -> None:
        with self._lock:
            self._running, cancelled, self._cancelled = None, self._cancelled, None
        if self.inner is not None:
            self.inner.after(conn, migration, stmt, error)
        if cancelled is not None and error is not None:
            self.stopped = f"{migration.label} at {cancelled} (the statement was cancelled and rolled back)"
            raise MigrationFailed(f"{cancelled}: {migration.label} was stopped by the watcher: {self.breach}. The "
                                  "running statement was cancelled and its transaction rolled back.",
                                  version=migration.version) from error


class _Background:
    """Samples the server while a step runs; the first breach is kept and fails the step (and, given a
    stopper, stops the migration running)."""

    def __init__(self, settings: Settings, totals: dict[str, Any], stopper: _StopOnBreach | None = None) -> None:
        self.watcher = Watcher(settings)
        self.totals = totals
        self.stopper = stopper
        self.breach: str | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pgshift-deploy-watch", daemon=True)
        self._interval = settings.watch.interval.seconds

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                sample = self.watcher.sample()
                _count(self.totals, sample)
                if sample.breaches and self.breach is None:
                    self.breach = sample.breaches[0]
                    if self.stopper is not None:
                        self.stopper.breached(self.breach, self.watcher.conn)
                self._stop.wait(self._interval)
        except (PgshiftError, psycopg.Error) as exc:
            self.error = mask_password(str(exc))

    def __enter__(self) -> _Background:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.watcher.close()


_SERIES_POINTS = 3600  # per watched step, for the HTML report's timeline


def _count(totals: dict[str, Any], sample: Sample) -> None:
    totals["samples"] = totals.get("samples", 0) + 1
    series = totals.setdefault("series", [])
    if len(series) < _SERIES_POINTS:  # [at, longest lock wait ms, sessions waiting, commits/s, rollbacks/s]
        series.append([sample.at, round(sample.longest_lock_wait_ms, 1), sample.blocked_sessions,
                       round(sample.commits_per_s, 1), round(sample.rollbacks_per_s, 1)])
    peak = totals.setdefault("peak", {})
    for key in ("longest_lock_wait_ms", "blocked_sessions", "longest_transaction_s", "rollbacks_per_s"):
        peak[key] = max(float(peak.get(key, 0.0)), float(getattr(sample, key)))
    if sample.breaches:
        totals.setdefault("breaches", []).append(f"{sample.at}: {sample.breaches[0]}")


# -- the flow ------------------------------------------------------------------------------
@contextlib.contextmanager
def _deploy_lock(settings: Settings) -> Iterator[History]:
    """The deploy's own advisory lock (beside migrate's, which each step takes in turn), held on a
    connection whose application_name says it is a deploy, so a second deploy names its holder."""
    with open_connection(settings) as conn:
        conn.execute("SELECT set_config('application_name', %s, false)", (f"{settings.application_name} deploy",))
        lock = AdvisoryLock(conn, f"{settings.history_schema}:deploy", settings.lock_wait.seconds)
        try:
            lock.acquire()
        except PgshiftError as exc:
            raise type(exc)(exc.message.replace("Another pgshift run holds the deploy lock",
                                                "Another `pgshift deploy` is running (it holds the deploy lock)"),
                            hint=exc.hint) from exc
        try:
            history = History(conn, settings.history_schema)
            history.ensure()
            yield history
        finally:
            lock.release()


def _unfinished(history: History) -> dict[str, Any] | None:
    """The newest deploy that started and never finished (killed), with its step events."""
    started = history.events_named("deploy-started", 1)
    if not started:
        return None
    deploy_id = started[0]["detail"]["deploy"]
    finished = [e for e in history.events_named("deploy-finished", 20) if e["detail"].get("deploy") == deploy_id]
    if finished:
        return None
    steps = [e["detail"] for e in reversed(history.events_named("deploy-step", 500))
             if e["detail"].get("deploy") == deploy_id]

    def newest(event: str) -> dict[str, Any] | None:
        return next((e["detail"] for e in history.events_named(event, 20) if e["detail"].get("deploy") == deploy_id),
                    None)

    # A failure policy that started (deploy-failing) is finished by --resume, never the steps retried;
    # deploy-restored is written into the restored copy before the swap, so it is there once the swap is.
    return {"started": started[0], "detail": started[0]["detail"], "steps": steps,
            "failing": newest("deploy-failing"), "restored": newest("deploy-restored")}


class Rollout:
    """One deploy: runs the steps in order, recording each in the ledger; runs the failure policy."""

    def __init__(self, settings: Settings, history: History, report: DeployReport, notify: Notify | None) -> None:
        self.settings = settings
        self.options = settings.deploy
        self.history = history
        self.report = report
        self.notify = notify or (lambda _message: None)
        self.done: set[str] = set()
        self.app_started = False
        self.migrations: dict[str, Migration] = {}
        self.part_applied: list[tuple[str, int, int]] = []  # (version, statements done, of) stopped part-way
        self.planned = False  # the batch is recorded in the ledger
        self._lint: Any = None  # the LintReport of the lint step
        # Takes the deploy lock again on a new connection: a restore's swap ends the session that held it.
        self.relock: Callable[[], History] | None = None

    # -- ledger ----------------------------------------------------------------------------
    def _event(self, event: str, version: str | None = None, **detail: Any) -> None:
        try:
            self.history.log(version, event, {"deploy": self.report.deploy_id, **detail})
        except psycopg.OperationalError:
            if self.relock is None:
                raise
            self.history = self.relock()  # a restore's swap ended the session
            self.history.log(version, event, {"deploy": self.report.deploy_id, **detail})

    def _step(self, name: str, action: Callable[[StepRecord], None]) -> None:
        if name in self.done:
            return
        record = StepRecord(name, "started", _now())
        self.report.steps.append(record)
        self._event("deploy-step", step=name, state="started")
        self.notify(f"deploy: {name}")
        try:
            action(record)
        except PgshiftError as exc:
            record.state, record.finished_at, record.detail = "failed", _now(), mask_password(exc.message)
            self._event("deploy-step", step=name, state="failed", error=record.detail, output=record.output)
            raise
        if record.state == "started":
            record.state = "done"
        record.finished_at = _now()
        self._event("deploy-step", step=name, state=record.state, detail=record.detail, output=record.output)

    # -- the steps -------------------------------------------------------------------------
    def check(self, record: StepRecord) -> None:
        from pgshift.safety.checks import FAILED, check

        checklist = check(self.settings)
        failed = [r for r in checklist.results if r.status == FAILED]
        # The backup step applies backup.policy itself (taking one, or refusing a destructive change without one).
        failed = [r for r in failed if r.name != "recent verified backup"]
        health = next((r for r in failed if r.name == "application health URL"), None)
        if health is not None:
            raise HealthCheckFailed(
                f"Before deploying, the application's health URL {self.settings.app.health_url} answered: "
                f"{health.value}. The running version must be healthy before a deploy starts. Nothing was changed.",
                hint="start the application (or fix app.health_url in pgshift.toml), then run `pgshift deploy` "
                "again.")
        if failed:
            listed = "; ".join(f"{r.name}: {r.value}" + (f" ({r.detail[0]})" if r.detail else "") for r in failed)
            raise DeployCheckFailed(f"The pre-deploy checklist failed: {listed}. Nothing was changed.",
                                    hint="run `pgshift check` for the whole list, fix what failed, then deploy "
                                    "again.")
        record.detail = checklist.summary()

    def lint(self, record: StepRecord) -> None:
        """Lint what is pending against the live server; split off destructive SQL migrations."""
        from pgshift.errors import MigrationRefused
        from pgshift.lint.context import runner_timeouts
        from pgshift.lint.live import lint_pending, starting_schema
        from pgshift.lint.model import lint_verdict

        report = status(self.settings)
        pending = list(report.pending)
        self.migrations = {m.version: m for m in report.plan.migrations}
        with open_connection(self.settings) as conn:
            lint = lint_pending(conn, self.settings.lint, pending, list(report.plan.applied),
                                history_schema=self.settings.history_schema, schema=starting_schema(self.settings),
                                runner_sets=runner_timeouts(self.settings))
        verdict = lint_verdict(lint, self.settings.lint.fail_level)
        if verdict.failed:
            raise MigrationRefused(
                f"Refusing to deploy: lint found problems at or above '{self.settings.lint.fail_level}': "
                f"{verdict.describe()}. Nothing was changed.",
                hint="run `pgshift lint` for the safe rewrite of each, or suppress a finding with "
                "`-- pgshift:ignore <rule> -- <reason>`.")
        first = next((n for n, m in enumerate(pending) if isinstance(m, SqlMigration) and lint.is_destructive(m)),
                     None)
        batch, deferred = (pending, []) if first is None else (pending[:first], pending[first:])
        if deferred and self.options.destructive == "refuse":
            raise MigrationRefused(
                f"Refusing to deploy: {deferred[0].label} drops data or breaks the running application "
                "(lint's destructive findings), and deploy.destructive = \"refuse\". Nothing was changed.",
                hint="deploy it in a later release once no application version needs what it drops, or set "
                "deploy.destructive = \"defer\" to run it after the watch window.")
        self.report.batch = [m.version for m in batch]
        self.report.deferred = [m.version for m in deferred]
        self._lint = lint
        record.detail = (f"{len(pending)} pending: {len(batch)} before the application, "
                         f"{len(deferred)} deferred until after the watch window"
                         + (f" ({', '.join(m.label for m in deferred)}: destructive)" if deferred else ""))

    def backup(self, record: StepRecord) -> None:
        todo = [self.migrations[v] for v in self.report.batch + self.report.deferred]
        checks = MigrateChecks(lint=False, backup=True, notify=self.notify)
        settings, why = self.settings, ""
        if self.options.on_failure == "restore":  # the failure policy swaps this backup in: always take one
            self._require_restore_rights()
            settings = replace(settings, backup=replace(settings.backup, policy="always"))
            why = " (deploy.on_failure = \"restore\" restores it on a failure)"
        apply_backup_policy(settings, todo, self._lint.is_destructive, checks, action="deploy",
                            describe=lambda m: m.label)
        self.report.backup = checks.backup_path
        record.detail = f"verified backup {checks.backup_path}{why}" if checks.backup_path else \
            f"none needed (backup.policy = {self.settings.backup.policy})"

    def _require_restore_rights(self) -> None:
        """Before anything changes: the restore needs to create a database and rename this one."""
        from pgshift.db.privileges import require_createdb, require_database_owner

        with open_connection(self.settings, deploy=True) as conn:
            doing = "deploy.on_failure = \"restore\" restores the backup into a new database beside this one and"
            require_createdb(conn, doing, instead="set deploy.on_failure = \"abort\"")
            require_database_owner(conn, "deploy.on_failure = \"restore\" renames the database to keep it, and so")

    def _migrate(self, versions: list[str], record: StepRecord) -> None:
        if not versions:
            record.state, record.detail = "skipped", "nothing to apply"
            return
        totals = self.report.watch.setdefault(record.name, {})
        stopper = _StopOnBreach()
        with _Background(self.settings, totals, stopper) as background:
            def between(message: str) -> None:  # a breach stops the run before its next migration
                if background.breach is not None and message.startswith("applying "):
                    raise WatchBreached(f"While migrating: {background.breach}.")
                self.notify(message)

            try:
                result = migrate(self.settings, to=versions[-1], notify=between, observer=stopper)
            except (PgshiftError, psycopg.Error) as exc:
                if stopper.breach is None:
                    raise
                # stopped in a migration: its step rolled back and the ledger marks it failed, saying why
                raise WatchBreached(f"While migrating: {stopper.breach}; stopped {stopper.stopped or 'it'}.") from exc
        if background.breach is not None:
            raise WatchBreached(f"While migrating: {background.breach}.")
        record.detail = f"applied {', '.join(r.version for r in result.applied) or 'nothing (already applied)'}"

    def app(self, record: StepRecord) -> None:
        command = self.options.app_command
        if not command:
            record.state, record.detail = "skipped", "no deploy.app_command"
            return
        self.app_started = True
        self._event("deploy-hook", hook="app_command", state="started", command=command)
        try:
            run = _hook("deploy.app_command", command, self.options.app_timeout, str(self.settings.base_dir))
        except DeployError as exc:
            record.output = list(exc.output)
            self._event("deploy-hook", hook="app_command", state="failed")
            raise
        record.output = run.output
        self._event("deploy-hook", hook="app_command", state="finished", seconds=round(run.seconds, 2))
        record.detail = f"{command!r} exited 0 in {run.seconds:.1f}s"

    def health(self, record: StepRecord, which: str = "new") -> None:
        url, command = self.settings.app.health_url, self.options.health_command
        if not url and not command:
            record.state, record.detail = "skipped", "no app.health_url or deploy.health_command"
            return
        timeout_s = self.options.health_timeout.seconds
        started = time.monotonic()
        last = ""
        while True:
            problems = []
            if url:
                code, error = probe(url, timeout=min(5.0, max(timeout_s, 0.5)))
                if code is None or not 200 <= code < 300:
                    problems.append(f"{url}: {error or f'HTTP {code}'}")
            if command and not problems:
                run = run_shell_hook(command, min(30.0, max(timeout_s, 1.0)), str(self.settings.base_dir))
                if run.returncode in (126, 127):
                    raise HookNotFound(f"deploy.health_command ({command!r}) could not be run: "
                                       f"{' | '.join(run.output[-2:])}.", hint="fix deploy.health_command.")
                if run.returncode != 0:
                    problems.append(f"deploy.health_command exited {run.returncode}: {' | '.join(run.output[-2:])}")
            if not problems:
                record.detail = f"healthy after {time.monotonic() - started:.1f}s"
                return
            last = "; ".join(problems)
            if time.monotonic() - started >= timeout_s:
                raise HealthCheckFailed(
                    f"The {which} application version did not become healthy within deploy.health_timeout = "
                    f"{self.options.health_timeout}: {last}.",
                    hint="look at the application's log; raise deploy.health_timeout if it only starts slowly.")
            time.sleep(0.5)

    def watch(self, record: StepRecord) -> None:
        seconds = self.options.watch.seconds
        if seconds <= 0:
            record.state, record.detail = "skipped", "deploy.watch = 0"
            return
        totals = self.report.watch.setdefault("watch", {})
        with Watcher(self.settings) as watcher:
            result = watcher.watch(seconds, lambda sample: _count(totals, sample))
        record.detail = f"{result.samples} samples over {result.seconds:.0f}s; no threshold crossed"

    def contract(self, record: StepRecord) -> None:
        from pgshift.ops.service import contract

        expanded = status(self.settings).expanded
        ours = [v for v in self.report.batch if expanded.get(v) in ("expanded", "contracting")]
        if not ours:
            record.state, record.detail = "skipped", "no expand to contract"
            return
        if self.options.contract == "auto":
            for version in ours:
                contract(self.settings, version=version, notify=self.notify,
                         checks=MigrateChecks(lint=False, backup=True, notify=self.notify))
                self.report.contracted.append(version)
            record.detail = f"contracted {', '.join(ours)}"
            return
        soak = self.options.soak.delta
        now = datetime.now(UTC)
        for version in ours:
            due = now + soak
            self._event("deploy-soak", version, expanded_at=now.isoformat(), due_at=due.isoformat())
            self.report.contract_due[version] = due.isoformat(timespec="seconds")
        record.detail = (f"left for later (deploy.contract = \"later\"): `pgshift contract` after "
                         f"{(now + soak):%Y-%m-%d %H:%M %Z} (deploy.soak = {self.options.soak})")

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> DeployReport:
        try:
            self.expand_steps()
            self._step("app", self.app)
            self._step("health", self.health)
            self._step("watch", self.watch)
            self.finish_steps()
        except PgshiftError as exc:
            raise self._fail(exc) from exc
        return self.deployed()

    # The database's own steps before and after the application's, apart, so a fleet deploy
    # (pgshift.fleet.deploy) runs them on every target around one app hook.
    def expand_steps(self, extra: dict[str, Any] | None = None) -> None:
        """check, lint, backup, then the batch (SQL migrations and expands) with the watcher."""
        self._step("check", self.check)
        self._step("lint", self.lint)
        self._step("backup", self.backup)
        if not self.planned:  # fixed once linted and backed up: a resume applies (or undoes) exactly these
            self.history.log(None, "deploy-started", {"deploy": self.report.deploy_id, "batch": self.report.batch,
                                                      "deferred": self.report.deferred,
                                                      "backup": self.report.backup, **(extra or {})})
            self.planned = True
        self._step("migrate", lambda r: self._migrate(self.report.batch, r))

    def finish_steps(self) -> None:
        """The deferred destructive migrations, then the contract (now or later)."""
        self._step("deferred", lambda r: self._migrate(self.report.deferred, r))
        self._step("contract", self.contract)

    def deployed(self) -> DeployReport:
        self.report.outcome = "deployed"
        self.report.runbook = self.runbook()
        self._event("deploy-finished", outcome="deployed", runbook=self.report.runbook_text())
        return self.report

    def _fail(self, exc: PgshiftError) -> PgshiftError:
        failed_step = self.report.steps[-1].name if self.report.steps else "start"
        self.report.error = mask_password(str(exc))
        if failed_step not in _CHANGING:
            self.report.outcome = "failed"
            self._event("deploy-finished", outcome="failed", step=failed_step, error=self.report.error)
            return exc  # nothing was changed: the original error, with its own exit code
        cls: type[DeployError]
        if isinstance(exc, DeployError):
            cls = type(exc)
        elif isinstance(exc, WatchBreached):
            cls = DeployBreached
        else:
            cls = DeployError
        policy = self.options.on_failure
        self._event("deploy-failing", policy=policy, step=failed_step, error=self.report.error)
        try:
            self.failure_policy()
        except PgshiftError as undo_exc:
            self.report.outcome = "failed"
            self.report.undo.append(f"stopped: {mask_password(str(undo_exc))}")
            self.report.runbook = self.runbook()
            self._event("deploy-finished", outcome="rollback incomplete", step=failed_step, undo=self.report.undo)
            error: DeployError = RollbackIncomplete(
                f"The deploy failed at step {failed_step} ({exc.message.rstrip('.')}), and undoing it stopped: "
                f"{undo_exc.message.rstrip('.')}. Done so far: {'; '.join(self.report.undo[:-1]) or 'nothing'}.",
                hint="finish by hand with the runbook in the report (`pgshift status` shows what is applied).")
            error.report = self.report
            return error
        self._event("deploy-finished", outcome=self.report.outcome, step=failed_step, undo=self.report.undo)
        hint = exc.hint
        if cls is DeployBreached:
            hint = ("the report's watch section has the peaks of each watched step; raise the threshold in [watch] "
                    "only if that level is acceptable for your application, then run `pgshift deploy` again.")
        error = cls(f"The deploy failed at step {failed_step}: {exc.message.rstrip('.')}. deploy.on_failure = "
                    f"\"{policy}\" ran: {'; '.join(self.report.undo) or 'nothing needed undoing'}.", hint=hint)
        error.report = self.report
        return error

    def failure_policy(self) -> None:
        """deploy.on_failure; sets the report's outcome. A deploy that never got to back up changed nothing,
        so a restore has nothing to do there: undo (which finds nothing applied) runs instead."""
        if self.options.on_failure == "restore" and self.planned and self.report.backup:
            self.restore_backup()
            self.report.outcome = "restored"
        else:
            self.undo()
            self.report.outcome = "rolled back"

    def restore_backup(self) -> None:
        """deploy.on_failure = "restore": this deploy's verified backup is restored beside the database and
        swapped in (`pgshift restore`), then the application rolled back. Before the swap the ledger's events
        since the backup, and a deploy-restored event, are written into the restored copy, so its ledger tells
        the whole story and a --resume after the swap only finishes the rest."""
        from pgshift.safety.restore import restore_database

        backup = str(self.report.backup)
        self._event("deploy-restore", state="started", backup=backup)
        events = self.history.events(100_000)
        schema = self.settings.history_schema

        def record_in_copy(copy_url: str, kept_as: str) -> None:
            from psycopg import sql
            from psycopg.types.json import Jsonb

            from pgshift.db.connect import connect

            with connect(copy_url, application_name=f"{self.settings.application_name} deploy") as conn:
                history = History(conn, schema)
                row = conn.execute(sql.SQL("SELECT coalesce(max(id), 0) FROM {}.events").format(
                    sql.Identifier(schema))).fetchone()
                newest = int(row[0]) if row else 0
                with conn.transaction():
                    for e in (e for e in events if int(e["id"]) > newest):
                        conn.execute(sql.SQL("INSERT INTO {}.events (at, version, event, actor, detail) "
                                             "VALUES (%s, %s, %s, %s, %s)").format(sql.Identifier(schema)),
                                     (e["at"], e["version"], e["event"], e["actor"], Jsonb(
                                         e["detail"])))
                    history.log(None, "deploy-restored", {"deploy": self.report.deploy_id, "backup": backup,
                                                         "kept_as": kept_as, "app_started": self.app_started,
                                                         "batch": self.report.batch,
                                                         "deferred": self.report.deferred})

        # The deploy rolls the application back and checks its health itself, after the swap.
        quiet = replace(self.settings, app=replace(self.settings.app, health_url=None))
        result = restore_database(quiet, backup, self.settings.deploy_url, say=self.notify,
                                  before_swap=record_in_copy)
        if self.relock is not None:
            self.history = self.relock()
        self.finish_restore(backup, str(result.kept_as), result.database)

    def finish_restore(self, backup: str, kept_as: str, database: str) -> None:
        """After the swap: the application back (hooks are idempotent), its health, and what the restore lost."""
        from pgshift.safety.manifest import read_manifest

        taken = read_manifest(Path(backup)).started_at
        self.report.restored = {"backup": backup, "backup_taken_at": taken, "database": database, "kept_as": kept_as}
        self.report.undo.append(
            f"restored {database} from the backup {backup} (taken {taken}) beside it and swapped it in: every write "
            f"since the backup is gone from {database}, and every session on it was ended for the swap; the "
            f"database as it was is kept as {kept_as}")
        self.undo_app()
        self._healthy_again()
        changed = self._changed_since_backup(backup, kept_as)
        self.report.restored["changed_tables"] = changed
        if changed:
            self.report.undo.append(f"row counts that differ between {kept_as} and the restored backup (writes now "
                                    f"lost from {database}; updates that kept a count are not counted): "
                                    + "; ".join(changed))
        self._event("deploy-undo", how="restore", backup=backup, kept_as=kept_as, changed_tables=changed)

    def _changed_since_backup(self, backup: str, kept_as: str) -> list[str]:
        """Per table of the backup: its row count in the database as it was before the restore, when that
        differs from the backup's. Counted on the kept copy, which nothing else uses."""
        from psycopg import sql

        from pgshift.db.connect import connect, with_dbname
        from pgshift.safety.manifest import read_manifest

        changed = []
        url = with_dbname(str(self.settings.deploy_url), kept_as)
        with connect(url, application_name=f"{self.settings.application_name} deploy") as conn:
            conn.execute("SET statement_timeout = '10s'")
            for table in read_manifest(Path(backup)).tables:
                if table.schema == self.settings.history_schema or table.rows is None:
                    continue
                name = f"{table.schema}.{table.name}"
                try:
                    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                        sql.Identifier(table.schema, table.name))).fetchone()
                except psycopg.Error as exc:
                    changed.append(f"{name}: not counted ({mask_password(str(exc)).strip()})")
                    continue
                if row is not None and int(row[0]) != table.rows:
                    changed.append(f"{name} had {row[0]} row(s), the backup {table.rows}")
        return changed

    def undo(self) -> None:
        """deploy.on_failure = "abort": the app back first (and waited for until it answers healthy), then what
        this deploy applied, newest first."""
        if self.undo_app():
            try:
                self._healthy_again()
            except HealthCheckFailed as exc:  # said, not raised: the schema is undone all the same
                self.report.undo.append(exc.message)
        self.undo_schema()

    def _healthy_again(self) -> None:
        """After the application was rolled back: wait until it answers healthy, as the deploy waited for the new
        version (deploy.health_timeout), so the deploy ends with the previous version serving."""
        if self.app_started and (self.settings.app.health_url or self.options.health_command):
            self.health(StepRecord("health", "started", _now()), which="previous")
            self.report.undo.append("the application is healthy again")

    def undo_app(self) -> bool:
        """deploy.rollback_app_command, when the app hook had started; whether it ran."""
        if not (self.app_started and self.options.rollback_app_command):
            return False
        command = self.options.rollback_app_command
        self._event("deploy-hook", hook="rollback_app_command", state="started", command=command)
        run = _hook("deploy.rollback_app_command", command, self.options.app_timeout, str(self.settings.base_dir))
        self._event("deploy-hook", hook="rollback_app_command", state="finished", output=run.output)
        self.report.undo.append(f"ran deploy.rollback_app_command {command!r} (exit 0 in {run.seconds:.1f}s)")
        return True

    def undo_schema(self) -> None:
        from pgshift.ops.service import abort

        applied = self._applied_now()
        # A statement-by-statement migration that stopped part-way is not undone: its down part is written for
        # the whole of it (it may drop what the failing statement found already there). Named, not hidden.
        for version, done, total in self.part_applied:
            left = (f"left migration {self._label(version)} part-applied: its statements 1-{done} of {total} stay "
                    "committed (a migration run statement by statement is not undone part-way; its down part is "
                    f"written for all of it); `pgshift migrate` on this database continues it at statement {done + 1} "
                    "after the migrations before it, or undo those statements by hand")
            self.report.left.append(left)
            self.report.undo.append(left)
        for version, how in reversed(applied):
            label = self._label(version)
            if how == "expand":
                lost = self._written_to_added_columns(version)
                abort(self.settings, version=version, notify=self.notify)
                self.report.undo.append(f"aborted the expand of {label} (`pgshift abort`)"
                                        + (f"; dropped with it: {lost}" if lost else ""))
            else:
                result = rollback(self.settings, steps=1, notify=self.notify)
                reverted = [r.version for r in result.reverted]
                if reverted != [version]:
                    raise DeployError(f"rolling back {label} rolled back {reverted or 'nothing'} instead; a "
                                           "migration newer than this deploy's was applied meanwhile.")
                self.report.undo.append(f"rolled back {label} with its down part")
            self._event("deploy-undo", version, how=how)

    def _written_to_added_columns(self, version: str) -> str:
        """What the abort of ``version`` loses: per column its expand added, the rows holding a value other
        than the column's default (written by the new version, since the old one does not know the column)."""
        from psycopg import sql

        m = self.migrations.get(version)
        ops = getattr(m, "ops", None)
        if ops is None:
            return ""
        found = []
        with open_connection(self.settings) as conn:
            for operation in getattr(ops, "operations", []):
                if getattr(operation, "kind", None) != "add_column":
                    continue
                column = operation.column
                default = sql.SQL(column.default) if column.default else sql.NULL
                query = sql.SQL("SELECT count(*) FROM {} WHERE {} IS NOT NULL AND {} IS DISTINCT FROM {}").format(
                    sql.Identifier(ops.schema, operation.table), sql.Identifier(column.name),
                    sql.Identifier(column.name), default)
                try:
                    row = conn.execute(query).fetchone()
                except psycopg.Error:
                    continue  # the column was never added (the expand stopped before it)
                if row and row[0]:
                    found.append(f"{operation.table}.{column.name} ({row[0]} row(s) hold values other than its "
                                 "default, written by the new version)")
        return ", ".join(found)

    def _applied_now(self) -> list[tuple[str, str]]:
        """This deploy's migrations that are applied now (from the ledger, so a killed run is seen
        as it really stopped): (version, "expand" for an .ops expand or "sql")."""
        report = status(self.settings)
        self.migrations = {m.version: m for m in report.plan.migrations}
        applied = {m.version for m in report.plan.applied}
        self.part_applied = [(v, row.statements_done, row.statements_total) for v in self.report.batch
                             + self.report.deferred if (row := report.plan.rows.get(v)) is not None
                             and row.direction == "up" and row.status in ("failed", "running")
                             and row.statements_done > 0 and v not in report.expanded]
        found = []
        for version in self.report.batch + self.report.deferred:
            if report.expanded.get(version) in ("expanding", "expanded", "aborting"):
                found.append((version, "expand"))
            elif version in applied and version not in report.expanded:
                found.append((version, "sql"))
        return found

    def _label(self, version: str) -> str:
        m = self.migrations.get(version)
        return m.label if m else version

    def runbook(self) -> list[RunbookStep]:
        """The exact commands that undo this deploy by hand, in order."""
        steps: list[RunbookStep] = []
        if self.options.rollback_app_command and self.app_started:
            steps.append(RunbookStep("shell", self.options.rollback_app_command,
                                     "roll the application back first: the old version works with the expanded "
                                     "schema, the new one may not work with the original"))
        for version, how in reversed(self._applied_now()):
            label = self._label(version)
            if version in self.report.contracted:
                where = f"`pgshift restore {self.report.backup}`" if self.report.backup else "a backup"
                steps.append(RunbookStep("pgshift", f"pgshift restore {self.report.backup or '<backup>'}",
                                         f"{label} is contracted: no command undoes it; restore {where} "
                                         "(loses every write since the backup)"))
                break
            if how == "expand":
                steps.append(RunbookStep("pgshift", f"pgshift abort --version {version}",
                                         f"undo the expand of {label} (drops what it added, restores what it "
                                         "renamed)"))
            else:
                m = self.migrations.get(version)
                down = " ".join(s.sql.strip() for s in (m.down or [])) if m else ""
                steps.append(RunbookStep("pgshift", "pgshift rollback --steps 1",
                                         f"roll back {label} with its down part: {down or '(none: restore a backup)'}"))
        return steps


# -- the HTML report -----------------------------------------------------------------------
def render_html(report: DeployReport) -> str:
    """One self-contained page: the steps as a timeline, each watched step's lock waits and rates (inline
    SVG), hook output, what the failure policy did, and the runbook."""
    from html import escape

    from pgshift.rehearsal.html import CSS

    ok = report.outcome == "deployed"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>pgshift deploy {escape(report.deploy_id)}: {escape(report.outcome)}</title>",
        f"<style>{CSS}</style></head><body><h1>pgshift deploy {escape(report.deploy_id)}</h1>",
        f"<div class='verdict {'pass' if ok else 'fail'}'>{escape(report.outcome)}</div>",
    ]
    if report.error:
        parts.append(f"<p class='bad'>{escape(report.error)}</p>")
    parts.append("<h2>Steps</h2><table><tr><th>step</th><th>state</th><th>started</th><th>finished</th>"
                 "<th>detail</th></tr>")
    for step in report.steps:
        output = f"<pre>{escape(chr(10).join(step.output))}</pre>" if step.output else ""
        parts.append(f"<tr><td>{escape(step.name)}</td><td>{escape(step.state)}</td><td>{escape(step.started_at)}"
                     f"</td><td>{escape(step.finished_at or '')}</td><td>{escape(step.detail)}{output}</td></tr>")
    parts.append("</table>")
    for name, totals in report.watch.items():
        parts.append(f"<h2>Watched during {escape(name)}</h2>")
        parts.append(f"<p class='muted'>{totals.get('samples', 0)} samples; peaks: "
                     + escape(", ".join(f"{k} {v:g}" for k, v in totals.get("peak", {}).items())) + "</p>")
        parts.append(_series_svg(totals.get("series", [])))
        for breach in totals.get("breaches", [])[:5]:
            parts.append(f"<p class='bad'>{escape(breach)}</p>")
    if report.undo:
        parts.append("<h2>What the failure policy did</h2><ul>"
                     + "".join(f"<li>{escape(line)}</li>" for line in report.undo) + "</ul>")
    if report.runbook:
        parts.append(f"<h2>Runbook</h2><pre>{escape(report.runbook_text())}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _series_svg(series: list[list[Any]]) -> str:
    """Longest lock wait (ms) and sessions waiting, sample by sample."""
    if len(series) < 2:
        return ""
    width, height, pad = 1000, 160, 30
    waits = [float(p[1]) for p in series]
    blocked = [float(p[2]) for p in series]

    def line(values: list[float], colour: str) -> str:
        top = max(values) or 1.0
        step = (width - 2 * pad) / (len(values) - 1)
        points = " ".join(f"{pad + n * step:.1f},{height - pad - v / top * (height - 2 * pad):.1f}"
                          for n, v in enumerate(values))
        return f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{points}'/>"

    return (f"<svg viewBox='0 0 {width} {height}' width='100%' role='img'>"
            f"{line(waits, '#c0392b')}{line(blocked, '#3b6fd8')}"
            f"<text x='{pad}' y='16'>red: longest lock wait (peak {max(waits):.0f} ms) · blue: sessions waiting "
            f"(peak {max(blocked):.0f}) · {len(series)} samples</text></svg>")


# -- `pgshift migrate --watch` ----------------------------------------------------------------
def migrate_watched(settings: Settings, *, notify: Notify | None = None,
                    **options: Any) -> tuple[MigrateReport, dict[str, Any]]:
    """`pgshift migrate --watch`: migrate with the watcher sampling in a thread. A [watch] threshold
    crossed stops the run before its next migration, or inside one at its next step (cancelling a statement
    that runs, see _StopOnBreach), and raises WatchBreached; returns the report and the watched totals."""
    totals: dict[str, Any] = {}
    started: list[str] = []
    stopper = _StopOnBreach(options.pop("observer", None))
    with _Background(settings, totals, stopper) as background:
        def between(message: str) -> None:
            if message.startswith("applying "):
                if background.breach is not None:
                    done = ", ".join(started) or "nothing"
                    raise WatchBreached(f"Migrating stopped before {message.removeprefix('applying ')}: "
                                        f"{background.breach}. Applied before it: {done}.",
                                        hint="find the cause (the watch's samples), then run `pgshift migrate` "
                                        "again for the rest.")
                started.append(message.removeprefix("applying "))
            if notify is not None:
                notify(message)

        try:
            report = migrate(settings, notify=between, observer=stopper, **options)
        except WatchBreached as exc:  # between migrations: say so, so status does not call it a crash
            with open_connection(settings) as conn:
                History(conn, settings.history_schema).log(None, "migrate-stopped", {"reason": exc.message,
                                                                                    "applied": started})
            raise
        except (PgshiftError, psycopg.Error) as exc:
            if stopper.breach is None:
                raise
            # in a migration: its step rolled back, and the ledger marks the migration failed, saying why
            raise WatchBreached(
                f"Migrating stopped in {stopper.stopped or 'a migration'}: {stopper.breach}. Applied before it: "
                f"{', '.join(started[:-1]) or 'nothing'}.",
                hint=f"find the cause (the watch's samples), then run `pgshift migrate` again: it continues with "
                f"{started[-1] if started else 'it'} where it stopped (`pgshift status` shows where).") from exc
    if background.breach is not None:
        raise WatchBreached(f"A [watch] threshold was crossed while migrating: {background.breach}. Every pending "
                            f"migration was applied ({', '.join(started) or 'none'}).",
                            hint="look at the application and the database now; `pgshift rollback` undoes "
                            "the migrations if they are the cause.")
    return report, totals


# -- entry points --------------------------------------------------------------------------
def plan(settings: Settings) -> DeployReport:
    """`pgshift deploy --dry-run`: the steps deploy would run, read from the settings and the ledger."""
    report = DeployReport("dry-run", outcome="planned", dry_run=True)
    st = status(settings)
    options = settings.deploy
    pending = list(st.pending)
    lines = [f"check: `pgshift check`'s required items (backup.policy = {settings.backup.policy})",
             f"lint the {len(pending)} pending migration(s) against the live server; destructive SQL migrations "
             f"are {'deferred until after the watch window' if options.destructive == 'defer' else 'refused'}",
             f"backup: per backup.policy = {settings.backup.policy}"]
    for m in pending:
        kind = "expand phase" if isinstance(m, OpsMigration) else "SQL"
        lines.append(f"  apply {m.label} ({kind}) with the watcher running")
    lines.append(f"app: {options.app_command!r} (timeout {options.app_timeout})" if options.app_command
                 else "app: skipped (no deploy.app_command)")
    health = " and ".join(x for x in (settings.app.health_url, options.health_command) if x)
    lines.append(f"health: poll {health} for up to {options.health_timeout}" if health
                 else "health: skipped (no app.health_url or deploy.health_command)")
    lines.append(f"watch: {options.watch} with the [watch] thresholds")
    lines.append("contract: right after the watch window" if options.contract == "auto"
                 else f"contract: later, due {options.soak} after the deploy (deploy.soak)")
    if options.on_failure == "restore":
        lines.append("on failure: restore: restore this deploy's backup beside the database and swap it in (loses "
                     "every write since the backup, ends every session on the database), then "
                     f"{options.rollback_app_command or 'no rollback_app_command'}")
    else:
        lines.append(f"on failure: {options.on_failure}: {options.rollback_app_command or 'no rollback_app_command'}"
                     ", then undo what this deploy applied, newest first")
    report.plan = lines
    report.batch = [m.version for m in pending]
    return report


def deploy(settings: Settings, *, dry_run: bool = False, resume: bool = False, roll_back: bool = False,
           notify: Notify | None = None) -> DeployReport:
    """Run the deployment flow (module docstring). Raises a DeployError subclass, carrying the report,
    when a step fails after the schema changed; earlier failures raise the failing check's own error."""
    require_url(settings.database_url)
    check_restore_confirmation(settings)
    if dry_run:
        return plan(settings)
    load(settings)  # a folder that cannot be read fails before the lock is taken
    if settings.deploy.on_failure == "restore":  # a deploy killed in its restore's swap left the database closed
        from pgshift.safety.restore import reopen_after_interrupted_swap

        reopened = reopen_after_interrupted_swap(settings.deploy_url or "")
        if reopened and notify:
            notify(reopened)
    with contextlib.ExitStack() as locks:
        return _deploy_locked(settings, locks.enter_context(_deploy_lock(settings)),
                              lambda: locks.enter_context(_deploy_lock(settings)),
                              resume=resume, roll_back=roll_back, notify=notify)


def _deploy_locked(settings: Settings, history: History, relock: Callable[[], History], *, resume: bool,
                   roll_back: bool, notify: Notify | None) -> DeployReport:
    waiting = _unfinished(history)
    if resume and waiting is None:
        raise DeployStateError("Nothing to resume: no interrupted `pgshift deploy` in the ledger.",
                               hint="run `pgshift deploy` to start one.")
    if waiting is not None and "fleet" in waiting["detail"]:  # its state spans every target: resume them all
        fleet = f"pgshift deploy --targets {waiting['detail']['fleet']}"
        raise DeployStateError(
            f"Deploy {waiting['detail']['deploy']} on this database is part of a fleet deploy (`{fleet}`) that "
            "stopped without finishing; this database alone cannot be deployed, resumed or rolled back.",
            hint=f"`{fleet} --resume` continues it on every target; `{fleet} --resume --roll-back` undoes it.")
    if not resume and waiting is not None:
        last = waiting["steps"][-1] if waiting["steps"] else {"step": "start", "state": "started"}
        raise DeployStateError(
            f"Deploy {waiting['detail']['deploy']} (started {waiting['started']['at']:%Y-%m-%d %H:%M:%S} by "
            f"{waiting['started']['actor']}) stopped at step {last['step']} ({last['state']}) without finishing: "
            "it was killed. A new deploy would start on top of its half-done state.",
            hint="`pgshift deploy --resume` continues it; `pgshift deploy --resume --roll-back` undoes it.")
    if resume and waiting is not None:
        run = resumed(settings, history, waiting, notify)
        run.relock = relock
        run._event("deploy-resumed", roll_back=roll_back,
                   at_step=waiting["steps"][-1]["step"] if waiting["steps"] else "start")
        if waiting["restored"] is not None:  # killed after the swap: finish what follows it
            restored = waiting["restored"]
            run.app_started = bool(restored.get("app_started"))
            return _roll_back(run, lambda: run.finish_restore(restored["backup"], restored["kept_as"],
                                                              _database_name(settings)), "restored")
        if waiting["failing"] is not None or roll_back:  # a failure policy that started is finished
            return _roll_back(run)
        return run.run()
    report = DeployReport(datetime.now(UTC).strftime("%Y%m%d%H%M%S-") + uuid.uuid4().hex[:6])
    history.log(None, "deploy-started", {"deploy": report.deploy_id})
    run = Rollout(settings, history, report, notify)
    run.relock = relock
    return run.run()


def _database_name(settings: Settings) -> str:
    with open_connection(settings, deploy=True) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
    return str(row[0]) if row else ""


def resumed(settings: Settings, history: History, waiting: dict[str, Any], notify: Notify | None) -> Rollout:
    """The Rollout of the killed deploy ``waiting`` (:func:`_unfinished`), at the first step it did not finish."""
    detail = waiting["detail"]
    report = DeployReport(detail["deploy"], resumed=True, batch=list(detail.get("batch", [])),
                          deferred=list(detail.get("deferred", [])), backup=detail.get("backup"))
    run = Rollout(settings, history, report, notify)
    if "batch" in detail:  # planned and backed up: go on from the first step not finished
        run.planned = True
        run.done = {s["step"] for s in waiting["steps"] if s.get("state") in ("done", "skipped")}
    run.app_started = any(s["step"] == "app" for s in waiting["steps"])
    return run


def _roll_back(run: Rollout, finish: Callable[[], None] | None = None, outcome: str = "") -> DeployReport:
    """`--resume --roll-back`, or `--resume` of a deploy killed in its failure policy: the policy (or ``finish``,
    what is left of it) on a killed deploy."""
    try:
        if finish is None:
            run.failure_policy()
        else:
            finish()
            run.report.outcome = outcome
    except PgshiftError as exc:
        run.report.outcome = "failed"
        run._event("deploy-finished", outcome="rollback incomplete", undo=run.report.undo)
        error = RollbackIncomplete(f"Undoing deploy {run.report.deploy_id} stopped: {exc.message.rstrip('.')}. "
                                   f"Done so far: {'; '.join(run.report.undo) or 'nothing'}.", hint=exc.hint)
        run.report.runbook = run.runbook()
        error.report = run.report
        raise error from exc
    run._event("deploy-finished", outcome=run.report.outcome, undo=run.report.undo)
    return run.report


__all__ = [
    "DeployBreached", "DeployCheckFailed", "DeployError", "DeployReport", "DeployStateError",
    "HealthCheckFailed", "HookFailed", "HookNotFound", "HookTimedOut", "RollbackIncomplete", "RunbookStep",
    "StepRecord", "deploy", "migrate_watched", "plan", "render_html",
]
