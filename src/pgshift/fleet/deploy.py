"""`pgshift deploy --targets FILE`: one deploy over a fleet, with the application's hook run once.

Three phases, each target's state in its own ledger (the events a one-database deploy writes,
under one deploy id shared by the fleet), so ``--resume`` after a kill continues where each target
stopped and the orchestrator keeps nothing of its own:

1. **expand**, per target (canary first, ``targets.parallel`` at a time, stopping per
   ``targets.max_failures``): the deploy's database steps — check, lint, backup, and the batch
   (plain SQL migrations and the expand phase of ``.ops`` migrations) with that target's watcher.
2. **app**, once: ``deploy.app_command``, the health check, and the watch window over one database
   of every server the fleet is on (server-wide figures: standby lag, WAL, the health URL; lock
   waits and rates of that database). Their step events go to every target's ledger.
3. **finish**, per target (canary first again): the deferred destructive migrations and the
   contract (``deploy.contract``: now, or its due date after ``deploy.soak``).

``deploy.on_failure = "abort"``: a failure in phase 1 or 2 runs ``deploy.rollback_app_command``
once (when the hook had started), then undoes on every target this deploy touched what it applied
there (``pgshift abort`` of an expand, the down part of a SQL migration), all targets, whatever
fails. Phase 3 only goes forward: once a target may be contracted, the old application version no
longer works everywhere, so a failure there leaves the fleet for ``--resume`` (docs/fleet.md).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg import conninfo

from pgshift.config import Settings
from pgshift.db.connect import mask_password
from pgshift.db.history import History
from pgshift.db.session import open_connection
from pgshift.errors import ConfigError, Interrupted, PgshiftError
from pgshift.fleet import (
    FAILED,
    NOT_STARTED,
    Events,
    FleetFailed,
    FleetReport,
    Outcome,
    Target,
    TargetResult,
    read_targets,
    rollout,
)
from pgshift.rollout import (
    DeployError,
    DeployReport,
    DeployStateError,
    Rollout,
    StepRecord,
    _count,
    _deploy_lock,
    _unfinished,
    resumed,
)
from pgshift.watch import WatchBreached, Watcher

Notify = Callable[[str], None]
PHASES = ("expand", "app", "finish")
_FLEET_STEPS = ("app", "health", "watch")
_FINISH_STEPS = ("deferred", "contract")


class FleetDeployFailed(DeployError):
    """`deploy --targets` failed on a target or in the app's steps; the summary says what each target did."""

    code = "fleet-deploy-failed"
    exit_code = 32

    fleet: FleetDeployReport | None = None


@dataclass
class FleetDeployReport:
    deploy_id: str
    targets_file: str
    parallel: int
    outcome: str = "running"  # deployed, rolled back, failed, rollback incomplete
    resumed: bool = False
    phases: dict[str, FleetReport] = field(default_factory=dict)  # expand, finish, undo
    steps: list[StepRecord] = field(default_factory=list)  # the fleet-wide steps: app, health, watch
    watch: dict[str, Any] = field(default_factory=dict)  # server -> watched totals
    undo: list[str] = field(default_factory=list)
    error: str | None = None
    duration_s: float = 0.0
    target_names: list[str] = field(default_factory=list)

    def summary(self) -> FleetReport:
        """One row per target over all phases: its last state, time, migrations applied, first error."""
        rows: list[TargetResult] = []
        for n, name in enumerate(self.target_names):
            found = {phase: report.results[n] for phase, report in self.phases.items() if n < len(report.results)}
            expand, finish, undo = found.get("expand"), found.get("finish"), found.get("undo")
            row = TargetResult(name, "", NOT_STARTED, canary=expand is not None and expand.canary)
            for r in found.values():
                row.where = r.where
                row.duration_s += r.duration_s
                row.applied = max(row.applied, r.applied)
                if r.error and row.error is None:
                    row.error, row.error_code, row.exit_code = r.error, r.error_code, r.exit_code
            if expand is not None and expand.result != NOT_STARTED:
                row.result = expand.result
            if finish is not None and finish.result != NOT_STARTED:
                row.result = finish.result
            if undo is not None and undo.result not in (NOT_STARTED, "nothing to undo"):
                row.result = "undo failed" if undo.failed else FAILED if row.result == FAILED else "rolled back"
                if row.result == FAILED:
                    left = getattr(undo.report, "left", None)
                    row.error = f"{row.error} (then rolled back{', but for what the undo lines name' if left else ''})"
            rows.append(row)
        stopped = next((r.stopped for r in self.phases.values() if r.stopped), None)
        return FleetReport("deploy", rows, self.parallel, self.duration_s, stopped)

    @property
    def contract_due(self) -> dict[str, str]:
        """version -> when its contract is due on every target (the latest target's date), with contract = later."""
        due: dict[str, str] = {}
        finish = self.phases.get("finish")
        for r in finish.results if finish is not None else []:
            for version, at in getattr(r.report, "contract_due", {}).items():
                due[version] = max(due.get(version, at), at)
        return due

    def to_json(self) -> dict[str, Any]:
        summary = self.summary().as_json()
        return {**summary, "deploy_id": self.deploy_id, "outcome": self.outcome, "resumed": self.resumed,
                "steps": [asdict(s) for s in self.steps], "watch": self.watch, "contract_due": self.contract_due,
                "undo": self.undo, "error": self.error,
                "phases": {name: r.as_json() for name, r in self.phases.items()}}


class _Buffer(History):
    """The ledger of the orchestrator's own Rollout (the app steps): its events are kept, then written
    to every target's ledger at once."""

    def __init__(self) -> None:  # no connection: nothing is read
        self.logged: list[tuple[str | None, str, dict[str, Any]]] = []

    def log(self, version: str | None, event: str, detail: dict[str, Any] | None = None) -> None:
        self.logged.append((version, event, detail or {}))


@dataclass
class _Survey:
    """What every target's ledger says before anything runs."""

    unfinished: dict[str, list[str]] = field(default_factory=dict)  # deploy id -> targets where it is unfinished
    fleet_ids: set[str] = field(default_factory=set)  # ids of those started by `deploy --targets`
    steps: dict[str, set[str]] = field(default_factory=dict)  # step -> states seen on any target
    finished: dict[str, set[str]] = field(default_factory=dict)  # deploy id -> outcomes on targets it finished on


class FleetDeploy:
    def __init__(self, settings: Settings, targets_file: str | Path, targets: list[Target], *,
                 events: Events | None, notify: Notify | None) -> None:
        self.settings = settings
        self.targets = targets
        self.events = events
        self.notify = notify or (lambda _message: None)
        self.rerun = f"pgshift deploy --targets {targets_file}"
        self.report = FleetDeployReport("", str(targets_file), settings.targets.parallel,
                                        target_names=[t.name for t in targets])
        self.hub: Rollout | None = None  # the app steps' Rollout, on the buffered ledger
        self.buffer = _Buffer()

    # -- every target's ledger first ---------------------------------------------------------
    def survey(self) -> _Survey:
        found = _Survey()

        def read(ts: Settings, _target: Target, _notify: Notify) -> Outcome:
            with open_connection(ts) as conn:
                history = History(conn, ts.history_schema)
                waiting = _unfinished(history)
                finished = [(e["detail"].get("deploy"), e["detail"].get("outcome"))
                            for e in history.events_named("deploy-finished", 20)]
            return Outcome("read", report=(waiting, finished))

        report = rollout(self.settings, self.targets, read, command="deploy", stop_on_failure=False)
        if report.failed:
            names = ", ".join(f"{r.target} ({r.error})" for r in report.failed[:5])
            raise FleetFailed(f"deploy --targets: {len(report.failed)} of {len(report.results)} target(s) could "
                              f"not be read before deploying: {names}. Nothing was changed.",
                              hint=f"make every target reachable (or drop it from the file), then run "
                              f"`{self.rerun}` again.")
        for r in report.results:
            waiting, finished = r.report
            for deploy_id, outcome in finished:
                found.finished.setdefault(deploy_id, set()).add(str(outcome))
            if waiting is None:
                continue
            deploy_id = waiting["detail"]["deploy"]
            found.unfinished.setdefault(deploy_id, []).append(r.target)
            if "fleet" in waiting["detail"]:
                found.fleet_ids.add(deploy_id)
            for step in waiting["steps"]:
                found.steps.setdefault(step["step"], set()).add(step.get("state", ""))
        return found

    # -- the run -----------------------------------------------------------------------------
    def start(self) -> FleetDeployReport:
        found = self.survey()
        if found.unfinished:
            listed = "; ".join(f"deploy {i} on {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                               for i, names in found.unfinished.items())
            raise DeployStateError(
                f"A deploy that was killed is unfinished on {sum(map(len, found.unfinished.values()))} target(s) "
                f"({listed}). A new deploy would start on top of its half-done state. Nothing was changed.",
                hint=f"`{self.rerun} --resume` continues it; `{self.rerun} --resume --roll-back` undoes it.")
        self.report.deploy_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S-") + uuid.uuid4().hex[:6]
        return self.run(found)

    def resume(self, roll_back: bool) -> FleetDeployReport:
        found = self.survey()
        ids = sorted(found.unfinished)
        if not ids:
            raise DeployStateError("Nothing to resume: no target has an interrupted `pgshift deploy` in its ledger.",
                                   hint=f"run `{self.rerun}` to start one.")
        if len(ids) > 1 or ids[0] not in found.fleet_ids:
            raise DeployStateError(
                f"The targets hold different unfinished deploys ({', '.join(ids)}), not one fleet deploy to resume: "
                + "; ".join(f"{i} on {', '.join(found.unfinished[i][:3])}" for i in ids) + ".",
                hint="resume each one-database deploy with `pgshift deploy --resume --database-url URL`, then "
                f"run `{self.rerun}`.")
        self.report.deploy_id, self.report.resumed = ids[0], True
        finishing = any(s in found.steps for s in _FINISH_STEPS) or "deployed" in found.finished.get(ids[0], ())
        rolling_back = "rollback" in found.steps or "rolled back" in found.finished.get(ids[0], ())
        if rolling_back and not roll_back:
            raise DeployStateError(
                f"Deploy {ids[0]} was being rolled back (deploy.on_failure) when it stopped: some targets are "
                "already undone, so continuing it forward would deploy the application over them. Nothing was "
                "changed.", hint=f"`{self.rerun} --resume --roll-back` finishes the rollback; then deploy again.")
        if roll_back:
            if finishing:
                raise DeployStateError(
                    f"Deploy {ids[0]} reached the contract phase on some targets: the new application version runs "
                    "and contracted targets no longer work with the old one, so it cannot be rolled back "
                    "by pgshift. Nothing was changed.",
                    hint=f"finish it with `{self.rerun} --resume`; `pgshift restore` undoes a contract on one target "
                    "(losing every write since its backup).")
            self.report.phases["expand"] = self._not_run()
            self._abort(app_started="app" in found.steps, failed_at="--roll-back")
            return self.report
        return self.run(found, finishing=finishing)

    def run(self, found: _Survey, *, finishing: bool = False) -> FleetDeployReport:
        started = time.monotonic()
        try:
            if not finishing:
                self.notify(f"deploy {self.report.deploy_id}: expand on {len(self.targets)} target(s)")
                expand = self._phase("expand", self._expand)
                if not expand.ok:
                    self._abort(app_started="app" in found.steps, failed_at="expand",
                                why=f"{len(expand.failed)} target(s) failed"
                                + (f", {len(expand.not_started)} not started" if expand.not_started else ""))
                self._app_steps(done={s for s, states in found.steps.items() if states & {"done", "skipped"}},
                                app_started="app" in found.steps)
            else:
                self.report.phases["expand"] = self._not_run()
            self.notify(f"deploy {self.report.deploy_id}: deferred migrations and contract on every target")
            finish = self._phase("finish", self._finish)
            if not finish.ok:
                self.report.outcome = "failed"
                failed = ", ".join(r.target for r in finish.failed[:5]) or "none"
                raise self._error(
                    f"deploy --targets {self.report.deploy_id} failed in its finish phase (deferred migrations, "
                    f"contract) on {len(finish.failed)} target(s) ({failed})"
                    + (f"; {len(finish.not_started)} not started ({finish.stopped})" if finish.not_started else "")
                    + ". The application runs the new version; nothing was rolled back (a contracted target no "
                    "longer works with the old version).",
                    hint=f"fix what failed (each target's error is in the summary), then run `{self.rerun} --resume`"
                    ": it finishes the targets left.")
        except Interrupted as exc:  # every target's ledger says where it stopped: a rerun is refused, resume is not
            raise Interrupted(exc.message, hint=f"`{self.rerun} --resume` continues this deploy; "
                              f"`{self.rerun} --resume --roll-back` undoes it.") from exc
        finally:
            self.report.duration_s = time.monotonic() - started
        self.report.outcome = "deployed"
        return self.report

    def _not_run(self) -> FleetReport:
        return FleetReport("deploy", [TargetResult(t.name, t.where, NOT_STARTED) for t in self.targets],
                           self.settings.targets.parallel)

    def _phase(self, name: str, work: Callable[[Settings, Target, Notify], Outcome], *,
               stop_on_failure: bool = True, targets: list[Target] | None = None) -> FleetReport:
        chosen = self.targets if targets is None else targets
        report = rollout(self.settings, chosen, work, command="deploy", stop_on_failure=stop_on_failure,
                         events=self.events)
        if targets is not None:  # a row for every target of the file, in its order
            by_name = {r.target: r for r in report.results}
            report.results = [by_name.get(t.name) or TargetResult(t.name, t.where, NOT_STARTED)
                              for t in self.targets]
        self.report.phases[name] = report
        return report

    # -- per target --------------------------------------------------------------------------
    def _open(self, ts: Settings, history: History, notify: Notify, *, start: bool) -> Rollout | None:
        """This deploy's Rollout on one target, from its ledger; None when it is finished there (or, unless
        ``start``, never began)."""
        deploy_id = self.report.deploy_id
        waiting = _unfinished(history)
        if waiting is not None:
            if waiting["detail"]["deploy"] != deploy_id:
                raise DeployStateError(f"Another deploy ({waiting['detail']['deploy']}) is unfinished on this "
                                       "target.", hint=f"`pgshift deploy --resume` on it first, then `{self.rerun}`.")
            return resumed(ts, history, waiting, notify)
        if not start or any(e["detail"].get("deploy") == deploy_id
                            for e in history.events_named("deploy-finished", 20)):
            return None
        history.log(None, "deploy-started", {"deploy": deploy_id, "fleet": self.report.targets_file})
        return Rollout(ts, history, DeployReport(deploy_id), notify)

    def _expand(self, ts: Settings, _target: Target, notify: Notify) -> Outcome:
        with _deploy_lock(ts) as history:
            run = self._open(ts, history, notify, start=True)
            if run is None:
                return Outcome("deployed")
            run.expand_steps(extra={"fleet": self.report.targets_file})
            return Outcome("expanded", applied=len(run.report.batch), report=run.report)

    def _finish(self, ts: Settings, _target: Target, notify: Notify) -> Outcome:
        with _deploy_lock(ts) as history:
            run = self._open(ts, history, notify, start=False)
            if run is None:
                return Outcome("deployed")
            run.app_started = True
            run.finish_steps()
            run.deployed()
            return Outcome("deployed", applied=len(run.report.batch) + len(run.report.deferred), report=run.report)

    def _undo(self, ts: Settings, _target: Target, notify: Notify) -> Outcome:
        with _deploy_lock(ts) as history:
            run = self._open(ts, history, notify, start=False)
            if run is None:
                # A run killed during its undo may have finished this target: say so, not "not started".
                earlier = [e["detail"].get("outcome") for e in history.events_named("deploy-finished", 20)
                           if e["detail"].get("deploy") == self.report.deploy_id]
                return Outcome("rolled back" if "rolled back" in earlier else "nothing to undo")
            run.undo_schema()
            run._event("deploy-finished", outcome="rolled back", undo=run.report.undo)
            return Outcome("rolled back", report=run.report)  # what it undid: report.undo (not an error)

    # -- once ----------------------------------------------------------------------------------
    def _record_everywhere(self, events: list[tuple[str | None, str, dict[str, Any]]]) -> None:
        """Write the orchestrator's step events to every target's ledger this deploy started on."""
        if not events:
            return

        def write(ts: Settings, _target: Target, _notify: Notify) -> Outcome:
            with open_connection(ts) as conn:
                history = History(conn, ts.history_schema)
                if not history.exists():  # this deploy never started here
                    return Outcome("no ledger")
                for version, event, detail in events:
                    history.log(version, event, detail)
            return Outcome("recorded")

        touched = self._touched()
        report = rollout(self.settings, touched, write, command="deploy", stop_on_failure=False)
        if report.failed:
            raise DeployError(f"Recording the deploy's {events[-1][2].get('step', 'app')} step in the ledgers failed "
                              f"on {', '.join(f'{r.target} ({r.error})' for r in report.failed[:3])}.",
                              hint=f"make the targets reachable, then run `{self.rerun} --resume`.")

    def _touched(self) -> list[Target]:
        expand = self.report.phases.get("expand")
        if expand is None or all(r.result == NOT_STARTED for r in expand.results):
            return list(self.targets)  # a resume past the expand phase: the ledgers say
        started = {r.target for r in expand.results if r.result != NOT_STARTED}
        return [t for t in self.targets if t.name in started]

    def _app_steps(self, *, done: set[str], app_started: bool) -> None:
        hub = Rollout(self.settings, self.buffer, DeployReport(self.report.deploy_id), self.notify)
        hub.done = done & set(_FLEET_STEPS)
        hub.app_started = app_started
        self.hub = hub
        hub.report.steps = self.report.steps
        hub.report.watch = self.report.watch
        try:
            if "app" not in hub.done:  # a kill during the hook must leave "it may have run" in the ledgers
                self._record_everywhere([(None, "deploy-step", {"deploy": self.report.deploy_id, "step": "app",
                                                                "state": "started"})])
            hub._step("app", hub.app)
            hub._step("health", hub.health)
            self._flush()  # a kill during the watch window resumes (or rolls back) knowing the app is out
            hub._step("watch", self._watch)
        except PgshiftError as exc:
            failed = self.report.steps[-1].name if self.report.steps else "app"
            with contextlib.suppress(PgshiftError):
                self._flush()
            self._abort(app_started=hub.app_started, failed_at=failed, why=mask_password(exc.message.rstrip(".")),
                        cause=exc)
        self._flush()

    def _flush(self) -> None:
        logged, self.buffer.logged = self.buffer.logged, []
        self._record_everywhere(logged)

    def _watch(self, record: StepRecord) -> None:
        """The watch window over one database of each server the fleet is on."""
        seconds = self.settings.deploy.watch.seconds
        if seconds <= 0:
            record.state, record.detail = "skipped", "deploy.watch = 0"
            return
        servers: dict[str, Target] = {}
        for target in self._touched():
            servers.setdefault(server_of(target), target)
        interval = self.settings.watch.interval.seconds
        samples = 0
        with contextlib.ExitStack() as stack:
            watchers = [(name, stack.enter_context(Watcher(self.settings, url=t.url))) for name, t in servers.items()]
            deadline = time.monotonic() + seconds
            while True:
                tick = time.monotonic()
                for name, watcher in watchers:
                    sample = watcher.sample()
                    _count(self.report.watch.setdefault(name, {}), sample)
                    if sample.breaches:
                        raise WatchBreached(f"During the watch window, on {name}: {sample.breaches[0]}.")
                samples += 1
                if time.monotonic() >= deadline:
                    break
                time.sleep(max(0.0, interval - (time.monotonic() - tick)))
        record.detail = (f"{samples} samples of {len(watchers)} server(s) ({', '.join(servers)}) over {seconds:g}s; "
                         "no threshold crossed")

    # -- the failure policy ----------------------------------------------------------------------
    def _abort(self, *, app_started: bool, failed_at: str, why: str = "", cause: PgshiftError | None = None) -> None:
        """deploy.on_failure = "abort": the application back once, then undo on every target this deploy
        touched; raise FleetDeployFailed (or return for --roll-back when all was undone)."""
        hub = self.hub or Rollout(self.settings, self.buffer, DeployReport(self.report.deploy_id), self.notify)
        hub.app_started = app_started
        problems: list[str] = []
        try:
            hub.undo_app()
        except PgshiftError as exc:
            problems.append(f"deploy.rollback_app_command failed: {mask_password(exc.message.rstrip('.'))}")
        self.report.undo.extend(hub.report.undo)
        with contextlib.suppress(PgshiftError):
            self._flush()
        touched = self._touched()
        with contextlib.suppress(PgshiftError):  # a --resume after a kill from here on must finish the rollback
            self._record_everywhere([(None, "deploy-step", {"deploy": self.report.deploy_id, "step": "rollback",
                                                            "state": "started"})])
        self.notify(f"deploy {self.report.deploy_id}: undoing it on {len(touched)} target(s)")
        undo = self._phase("undo", self._undo, stop_on_failure=False, targets=touched)
        rolled = [r for r in undo.results if r.result == "rolled back" and r.report is not None]
        earlier = [r for r in undo.results if r.result == "rolled back" and r.report is None]
        self.report.undo.append(f"undid this deploy's migrations on {len(rolled)} target(s) "
                                "(`pgshift abort` of each expand, the down part of each SQL migration)"
                                + (f"; {len(earlier)} more target(s) had been undone by the run that was "
                                   f"interrupted ({', '.join(r.target for r in earlier[:5])})" if earlier else ""))
        self.report.undo += [f"{r.target}: {line}" for r in undo.results for line in getattr(r.report, "left", [])]
        problems += [f"{r.target}: {(r.error or '').split(' Hint: ')[0].rstrip('.')}" for r in undo.failed]
        self.report.outcome = "rollback incomplete" if problems else "rolled back" if failed_at == "--roll-back" \
            else "failed"
        if failed_at == "--roll-back" and not problems:
            return
        what = f"failed at {failed_at}" + (f" ({why})" if why else "") if failed_at != "--roll-back" \
            else "was rolled back on request"
        undone = f"deploy.on_failure = \"abort\" ran: {'; '.join(self.report.undo)}"
        if problems:
            message = (f"deploy --targets {self.report.deploy_id} {what}, and undoing it stopped on "
                       f"{len(problems)} point(s): {'; '.join(problems[:5])}. {undone}.")
            hint = (f"fix what stopped the undo, then run `{self.rerun} --resume --roll-back` (it undoes what is "
                    "left on each target)")
        else:
            message = f"deploy --targets {self.report.deploy_id} {what}. {undone}."
            hint = f"fix what failed (each target's error is in the summary), then run `{self.rerun}` again"
        self.report.error = mask_password(message)
        raise self._error(message, hint=hint + ".", cause=cause)

    def _error(self, message: str, *, hint: str, cause: PgshiftError | None = None) -> FleetDeployFailed:
        error = FleetDeployFailed(mask_password(message), hint=hint)
        self.report.error = error.message
        error.fleet = self.report
        if cause is not None:
            error.__cause__ = cause
        return error


def server_of(target: Target) -> str:
    """host:port of a target, to watch each server once."""
    params = conninfo.conninfo_to_dict(target.url)
    return f"{params.get('host') or 'local socket'}:{params.get('port') or 5432}"


def deploy_targets(settings: Settings, targets_file: str | Path, *, resume: bool = False, roll_back: bool = False,
                   events: Events | None = None, notify: Notify | None = None) -> FleetDeployReport:
    """`pgshift deploy --targets FILE` (module docstring). Raises FleetDeployFailed, carrying the report,
    when a target or an app step failed; DeployStateError when an unfinished deploy is in the way."""
    if settings.deploy.on_failure != "abort":
        # Settings keep no origin per key: the file, and the one variable that overrides it.
        where = (f"{settings.source} (or the environment variable PGSHIFT_DEPLOY__ON_FAILURE, which overrides it)"
                 if settings.source != "defaults" else "the environment variable PGSHIFT_DEPLOY__ON_FAILURE")
        raise ConfigError(
            f"deploy --targets implements deploy.on_failure = \"abort\" only, and deploy.on_failure is "
            f"{settings.deploy.on_failure!r} in {where}: a fleet deploy does not restore a backup of every target "
            "(it would lose every write since each backup on every database). Nothing was read or changed.",
            hint="set deploy.on_failure = \"abort\" under [deploy] for fleet deploys (docs/fleet.md says what it "
            "undoes), or deploy each database on its own with `pgshift deploy --database-url URL`.")
    targets = read_targets(settings, targets_file)
    settings.migrations_path  # noqa: B018 - a missing or ambiguous folder fails once, before any target
    run = FleetDeploy(settings, targets_file, targets, events=events, notify=notify)
    return run.resume(roll_back) if resume else run.start()


__all__ = ["FleetDeployFailed", "FleetDeployReport", "deploy_targets"]
