"""Fleet rollout (``--targets FILE``): one command over many databases, each with its own ledger.

A targets file lists connection URLs (or names looked up with ``targets.query``), one a line.
:func:`rollout` runs a per-target function over them: a canary group first, then
``targets.parallel`` at a time, starting no new target once more than ``targets.max_failures``
have failed (or any canary has). Every target has its own connection, deploy lock and ledger, so a
rerun after a crash resumes: a finished target has nothing pending, an interrupted one continues
as a single-database run of the same command would.

:func:`migrate_targets`, :func:`status_targets` and :func:`check_targets` are the commands;
another workflow (``deploy``: expand every target, run the app hook once, contract every target)
calls :func:`rollout` once per phase with its own :data:`Work`. Threads, not processes: a target's
time is mostly waiting for its server, and a thread shares the parsed migrations (docs/scale.md).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo

from pgshift.config import Settings
from pgshift.db.connect import connect, dbname_in, describe_target, mask_password
from pgshift.deploy import migrate, status
from pgshift.errors import ConfigError, FileProblem, Interrupted, PgshiftError
from pgshift.runner.gate import MigrateChecks
from pgshift.safety.checks import Thresholds, check


class FleetFailed(PgshiftError):
    """One or more targets of a `--targets` run failed, or were not started after a failure."""

    code = "fleet-failed"
    exit_code = 31


# -- the targets file ----------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """One database of the fleet. ``name`` is what the summary and ``targets.canary`` use; it never
    holds credentials (a label from the file or the catalog, else the database name)."""

    name: str
    url: str
    source: str  # "FILE:LINE" (or the catalog query) it came from, for messages

    @property
    def where(self) -> str:
        return describe_target(self.url)


def _is_url(token: str) -> bool:
    return "://" in token or "=" in token


def _strip_comment(line: str) -> str:
    # A # starts a comment at the line's start or after a space; inside a conninfo value it may be a password.
    text = line.strip()
    if text.startswith("#"):
        return ""
    cut = text.find(" #")
    return (text[:cut] if cut >= 0 else text).strip()


def read_targets(settings: Settings, path: str | Path) -> list[Target]:
    """The targets ``path`` lists: ``URL``, ``NAME URL``, ``NAME`` (looked up with targets.query) or
    ``*`` (every row of targets.query). Refuses an empty file, a duplicate and an unknown name,
    naming the file and line."""
    file = settings.resolve(str(path))
    try:
        lines = file.read_text().splitlines()
    except FileNotFoundError:
        raise FileProblem(f"The targets file {file} does not exist.",
                          hint="pass --targets FILE naming a file with one connection URL or target name a line.") \
            from None
    except OSError as exc:
        raise FileProblem(f"The targets file {file} cannot be read: {exc.strerror}.") from exc
    listed: list[tuple[str | None, str | None, str]] = []  # (name, url, FILE:LINE)
    for number, raw in enumerate(lines, 1):
        text = _strip_comment(raw)
        if not text:
            continue
        where = f"{file}:{number}"
        first, _, rest = text.partition(" ")
        rest = rest.strip()
        if _is_url(first):
            listed.append((None, text, where))  # a URL, or a key=value string with spaces
        elif rest and _is_url(rest):
            listed.append((first, rest, where))
        elif rest:
            raise ConfigError(f"{where}: {mask_password(text)!r} is neither a connection URL, a target name, nor "
                              "'NAME URL'.", hint="write one target a line; names have no spaces.")
        else:
            listed.append((first, None, where))
    if not listed:
        raise ConfigError(f"The targets file {file} lists no target (only comments or blank lines).",
                          hint="add one connection URL or target name a line.")
    catalog = _catalog(settings, file) if any(url is None for _name, url, _where in listed) else {}
    targets: list[Target] = []
    for name, url, where in listed:
        if url is not None:
            targets.append(_target(name, url, where))
        elif name == "*":
            targets.extend(_target(n, u, f"{where} (targets.query)") for n, u in catalog.items())
        elif name in catalog:
            targets.append(_target(name, catalog[name], f"{where} (targets.query)"))
        else:
            raise ConfigError(f"{where}: no target named {name!r}: targets.query returned no row with that name "
                              f"({len(catalog)} rows).", hint="fix the name, or the tenants table the query reads.")
    return _unique(targets)


def _target(name: str | None, url: str, where: str) -> Target:
    try:
        conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ConfigError(f"{where}: {mask_password(url)} is not a valid connection string.",
                          hint="write a libpq URL (postgresql://user@host:5432/db) or key=value string.") from None
    return Target(name or dbname_in(url) or describe_target(url), url, where)


def _unique(targets: list[Target]) -> list[Target]:
    seen: dict[str, Target] = {}
    for t in targets:
        key = conninfo.make_conninfo(**{k: str(v) for k, v in conninfo.conninfo_to_dict(t.url).items()
                                        if k in ("host", "port", "dbname", "user")})
        if key in seen:
            raise ConfigError(f"{t.source}: {t.where} is listed twice (first at {seen[key].source}).",
                              hint="list every database once: two runs on one database would wait for each other.")
        seen[key] = t
    # Two databases of the same name on two servers: tell them apart by where they are.
    names = Counter(t.name for t in targets)
    return [dataclasses.replace(t, name=f"{t.name} ({t.where.removeprefix('database ')})")
            if names[t.name] > 1 else t for t in targets]


def _catalog(settings: Settings, file: Path) -> dict[str, str]:
    """name -> URL, from targets.query on targets.catalog_url (else database_url)."""
    query = settings.targets.query
    if not query:
        raise ConfigError(f"{file} lists target names, which are looked up with targets.query, and none is set.",
                          hint="set targets.query (SQL returning name, url rows) in the [targets] section, or "
                          "write connection URLs in the file.")
    url = settings.targets.catalog_url or settings.database_url
    if not url:
        raise ConfigError("targets.query needs a catalog database: set targets.catalog_url (or database_url).")
    with connect(url, application_name=settings.application_name) as conn:
        try:
            cur = conn.execute(query.encode())
        except psycopg.Error as exc:
            raise ConfigError(f"targets.query failed on the catalog ({describe_target(url)}): "
                              f"{mask_password(str(exc).strip())}.", hint="fix targets.query in the [targets] "
                              "section; it must return rows of (name, url).") from exc
        if cur.description is None or len(cur.description) != 2:
            columns = 0 if cur.description is None else len(cur.description)
            raise ConfigError(f"targets.query must return two columns (name, url), not {columns}.",
                              hint="select the tenant's name and its connection URL, e.g. "
                              "SELECT name, url FROM tenants.")
        rows = cur.fetchall()
    return {str(name): str(url) for name, url in rows if name is not None and url is not None}


# -- the rollout ---------------------------------------------------------------------------
NOT_STARTED = "not started"
FAILED = "failed"


@dataclass
class Outcome:
    """What a :data:`Work` function returns for one target that did not raise."""

    result: str  # "applied", "up to date", "pending", "passed", ...
    applied: int = 0
    pending: int = 0
    failed: bool = False  # e.g. a checklist with a failed check
    error: str | None = None
    report: Any = None  # the command's own report (MigrateReport, StatusReport, Checklist)


@dataclass
class TargetResult:
    """One row of the summary table."""

    target: str
    where: str
    result: str
    duration_s: float = 0.0
    applied: int = 0
    pending: int = 0
    error: str | None = None
    error_code: str | None = None
    exit_code: int = 0
    canary: bool = False
    report: Any = field(default=None, repr=False)

    @property
    def failed(self) -> bool:
        return self.result == FAILED

    def as_json(self) -> dict[str, Any]:
        return {"target": self.target, "where": self.where, "result": self.result,
                "duration_s": round(self.duration_s, 3), "applied": self.applied, "pending": self.pending,
                "error": self.error, "error_code": self.error_code, "canary": self.canary}


@dataclass
class FleetReport:
    command: str
    results: list[TargetResult]
    parallel: int
    duration_s: float = 0.0
    stopped: str | None = None  # why targets were not started
    changes: bool = True  # the command changes the databases (a rerun resumes it)

    @property
    def failed(self) -> list[TargetResult]:
        return [r for r in self.results if r.failed]

    @property
    def not_started(self) -> list[TargetResult]:
        return [r for r in self.results if r.result == NOT_STARTED]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_started

    @property
    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for r in self.results:
            found[r.result] = found.get(r.result, 0) + 1
        return found

    def as_json(self) -> dict[str, Any]:
        return {"command": self.command, "parallel": self.parallel, "duration_s": round(self.duration_s, 3),
                "counts": self.counts, "stopped": self.stopped, "targets": [r.as_json() for r in self.results]}

    def raise_for_failures(self, rerun: str) -> None:
        """FleetFailed when a target failed or was not started; ``rerun`` is the command that continues."""
        if self.ok:
            return
        failed = self.failed
        names = ", ".join(r.target for r in failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
        what = f"{len(failed)} of {len(self.results)} target(s) failed ({names})" if failed else "no target failed"
        if self.not_started:
            what += f"; {len(self.not_started)} not started ({self.stopped})"
        resume = ": targets with nothing pending are skipped and interrupted ones resume where they stopped" \
            if self.changes else ""
        raise FleetFailed(f"{self.command} --targets: {what}. Each target's error is in the summary.",
                          hint=f"fix what failed, then run `{rerun}` again{resume}.")


class Events:
    """What a rollout tells its caller as it goes (the CLI's progress display); every method may be
    called from several threads at once."""

    def begin(self, targets: list[Target], canary: list[Target]) -> None:
        """The rollout starts: every target, and which go first."""

    def started(self, target: Target) -> None:
        """``target`` starts."""

    def note(self, target: Target, message: str) -> None:
        """A line of progress from ``target`` (``applying 20240101 create users``)."""

    def finished(self, target: Target, result: TargetResult) -> None:
        """``target`` finished (or will not start: ``result.result == "not started"``)."""


Work = Callable[[Settings, Target, Callable[[str], None]], Outcome]
"""One target's part of a command: its Settings (database_url is the target's), the target, and a
``notify`` for progress lines. Raise a PgshiftError (or return ``Outcome(failed=True)``) to fail it."""


def target_settings(settings: Settings, target: Target) -> Settings:
    """``settings`` for one target: its URL (for the deploy session too: a migrate_url names one database,
    not the target's), the migrations folder already settled (no announcement from every thread)."""
    folder = settings.migrations_path  # settles discovery once, in the caller's thread
    return dataclasses.replace(settings, database_url=target.url, migrate_url=None, migrations_dir=str(folder),
                               discovery=None, announce=None)


def canary_group(settings: Settings, targets: list[Target]) -> list[Target]:
    canary = settings.targets.canary
    if isinstance(canary, int):
        return targets[:canary]
    by_name = {t.name: t for t in targets}
    unknown = [name for name in canary if name not in by_name]
    if unknown:
        raise ConfigError(f"targets.canary names {', '.join(repr(n) for n in unknown)}, which the targets file does "
                          f"not list (it lists {', '.join(t.name for t in targets[:5])}"
                          f"{', ...' if len(targets) > 5 else ''}).",
                          hint="name targets as the summary shows them, or set targets.canary to a count.")
    return [by_name[name] for name in dict.fromkeys(canary)]


def rollout(settings: Settings, targets: list[Target], work: Work, *, command: str, stop_on_failure: bool = True,
            events: Events | None = None) -> FleetReport:
    """Run ``work`` on every target: the canary group (targets.canary) first, then the rest,
    targets.parallel at a time. With ``stop_on_failure`` (commands that change the databases), a
    failed canary or more than targets.max_failures failures start no new target; the ones running
    finish. Read-only commands (status, check) pass False and visit every target."""
    events = events or Events()
    parallel = settings.targets.parallel
    canary = canary_group(settings, targets) if stop_on_failure else []
    first = set(canary)
    rest = [t for t in targets if t not in first]
    events.begin(targets, canary)
    results: dict[Target, TargetResult] = {}
    failures = [0]  # counted by _run_group as targets finish (summing all results each time is quadratic)
    stopped: str | None = None
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="pgshift-target") as pool:
            if canary:
                _run_group(pool, settings, canary, work, events, results, failures, parallel, lambda: False,
                           canary=True)
                bad = [t.name for t in canary if results[t].failed]
                if bad:
                    stopped = f"canary {', '.join(bad)} failed"

            def over_limit() -> bool:
                return stop_on_failure and failures[0] > settings.targets.max_failures

            if stopped is None:
                _run_group(pool, settings, rest, work, events, results, failures, parallel, over_limit, canary=False)
                if len(results) < len(targets):
                    stopped = f"{failures[0]} target(s) failed, more than " \
                              f"targets.max_failures = {settings.targets.max_failures}"
    except KeyboardInterrupt:
        # Only after the pool has waited for the running targets: their migrations end as they would alone.
        raise Interrupted(
            f"Interrupted: no target was started after Ctrl-C, and the ones running finished first "
            f"({len(results)} of {len(targets)} had finished before).",
            hint=f"run the same `pgshift {command} --targets` command again to continue: targets with nothing "
            "pending are skipped.") from None
    for t in targets:
        if t not in results:
            results[t] = TargetResult(t.name, t.where, NOT_STARTED, canary=t in canary)
            events.finished(t, results[t])
    return FleetReport(command, [results[t] for t in targets], parallel, time.monotonic() - started, stopped,
                       changes=stop_on_failure)


def _run_group(pool: ThreadPoolExecutor, settings: Settings, group: Iterable[Target], work: Work, events: Events,
               results: dict[Target, TargetResult], failures: list[int], parallel: int, stop: Callable[[], bool], *,
               canary: bool) -> None:
    """Keep ``parallel`` targets of ``group`` running until it is done or ``stop()`` says so."""
    queue = deque(group)
    running: dict[Future[TargetResult], Target] = {}
    try:
        while queue or running:
            while queue and len(running) < parallel and not stop():
                target = queue.popleft()
                events.started(target)
                running[pool.submit(_one, settings, target, work, events, canary)] = target
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                target = running.pop(future)
                results[target] = future.result()
                failures[0] += results[target].failed
                events.finished(target, results[target])
    except BaseException:
        # Ctrl-C: start nothing more; the running targets finish their current migration (the pool waits).
        for future in running:
            future.cancel()
        raise


def _one(settings: Settings, target: Target, work: Work, events: Events, canary: bool) -> TargetResult:
    started = time.monotonic()
    result = TargetResult(target.name, target.where, FAILED, canary=canary)
    try:
        outcome = work(target_settings(settings, target), target, lambda message: events.note(target, message))
    except PgshiftError as exc:
        result.error, result.error_code, result.exit_code = mask_password(str(exc)), exc.code, exc.exit_code
    except psycopg.Error as exc:  # the connection was lost mid-run; the server rolled back what was open
        result.error, result.error_code = mask_password(" ".join(str(exc).split())), "connection"
        result.exit_code = 4
    except Exception as exc:  # one target's crash must not hide the others' results
        result.error, result.error_code, result.exit_code = mask_password(f"{type(exc).__name__}: {exc}"), "bug", 1
    else:
        result.result = FAILED if outcome.failed else outcome.result
        result.applied, result.pending, result.report = outcome.applied, outcome.pending, outcome.report
        result.error = mask_password(outcome.error) if outcome.error else None
    result.duration_s = time.monotonic() - started
    return result


# -- the commands --------------------------------------------------------------------------
def migrate_targets(settings: Settings, targets_file: str | Path, *, to: str | None = None, repair: bool = False,
                    out_of_order: bool | None = None, lint: bool = True, backup: bool = True,
                    events: Events | None = None) -> FleetReport:
    """`pgshift migrate --targets FILE`: :func:`pgshift.deploy.migrate` on every target, with the
    lint and backup gate of each (as the CLI runs it on one database)."""
    targets = read_targets(settings, targets_file)
    settings.migrations_path  # noqa: B018 - a missing or ambiguous folder fails once, before any target

    def one(target_settings: Settings, _target: Target, notify: Callable[[str], None]) -> Outcome:
        checks = MigrateChecks(lint=lint, backup=backup, notify=notify)
        report = migrate(target_settings, to=to, repair=repair, out_of_order=out_of_order, notify=notify,
                         checks=checks)
        return Outcome("up to date" if report.nothing_to_do else "applied", applied=len(report.applied),
                       report=report)

    return rollout(settings, targets, one, command="migrate", events=events)


def status_targets(settings: Settings, targets_file: str | Path, *, events: Events | None = None) -> FleetReport:
    """`pgshift status --targets FILE`: every target's applied and pending counts (all targets are visited)."""
    targets = read_targets(settings, targets_file)

    def one(target_settings: Settings, _target: Target, _notify: Callable[[str], None]) -> Outcome:
        report = status(target_settings)
        counts = report.counts
        state = "interrupted" if counts["interrupted"] or counts["failed"] else \
            "pending" if counts["pending"] else "up to date"
        problems = "; ".join(p.detail for p in report.problems) or None
        return Outcome(state, applied=counts["applied"], pending=counts["pending"], error=problems, report=report)

    return rollout(settings, targets, one, command="status", stop_on_failure=False, events=events)


def check_targets(settings: Settings, targets_file: str | Path, thresholds: Thresholds | None = None, *,
                  events: Events | None = None) -> FleetReport:
    """`pgshift check --targets FILE`: the checklist on every target; a target whose checklist has a
    failed check is failed (all targets are visited)."""
    targets = read_targets(settings, targets_file)

    def one(target_settings: Settings, _target: Target, _notify: Callable[[str], None]) -> Outcome:
        checklist = check(target_settings, thresholds)
        failed = [f"{r.name}: {r.value}" for r in checklist.results if r.status == "failed"]
        pending = next((r.value for r in checklist.results if r.name == "pending migrations"), "")
        return Outcome("passed" if not failed else FAILED, failed=bool(failed),
                       pending=int(pending.split()[0]) if pending[:1].isdigit() else 0,
                       error="; ".join(failed) or None, report=checklist)

    return rollout(settings, targets, one, command="check", stop_on_failure=False, events=events)

