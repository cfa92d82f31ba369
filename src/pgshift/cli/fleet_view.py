"""`--targets FILE` of migrate, status, check, deploy and rehearse: the progress display across targets,
the summary, and its HTML page (``--html``).

Rendering only; the rollout is ``api.migrate_targets`` / ``status_targets`` / ``check_targets`` /
``deploy_targets`` / ``rehearse_targets``.
Names and places come from the library without credentials; errors are masked there too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from pgshift import api
from pgshift.cli.common import print_json, stderr, stdout
from pgshift.errors import UsageError

targets_option = click.option(
    "--targets", "targets_file", type=click.Path(dir_okay=False), default=None,
    help="Run on every database this file lists (URLs or names, one a line; see docs/fleet.md), "
         "per [targets] canary, parallel and max_failures.")

html_option = click.option(
    "--html", "html_path", type=click.Path(dir_okay=False), default=None,
    help="With --targets: also write the summary (target, result, duration, migrations, error) as one HTML file.")

_COLOURS = {"applied": "green", "up to date": "green", "passed": "green", "pending": "yellow",
            "interrupted": "red", "failed": "red", "not started": "yellow", "deployed": "green",
            "expanded": "yellow", "rolled back": "yellow", "undo failed": "red"}


class _Lines(api.FleetEvents):
    """Not a terminal: one line on stderr per finished target."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def finished(self, target: api.Target, result: api.TargetResult) -> None:
        extra = f", {result.applied} applied" if result.applied else ""
        with self._lock:
            click.echo(click.style("· ", dim=True) + f"{target.name}: {result.result} ({result.duration_s:.1f} s"
                       f"{extra})", err=True)


class _Live(api.FleetEvents):
    """A terminal: an overall bar and one line per running target with its latest progress note."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._overall: TaskID | None = None
        self._rows: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def begin(self, targets: list[api.Target], canary: list[api.Target]) -> None:
        first = f" ({len(canary)} canary first)" if canary else ""
        self._overall = self._progress.add_task(f"targets{first}", total=len(targets))

    def started(self, target: api.Target) -> None:
        with self._lock:
            self._rows[target.name] = self._progress.add_task(f"  {escape(target.name)}: starting", total=None)

    def note(self, target: api.Target, message: str) -> None:
        with self._lock:
            if (row := self._rows.get(target.name)) is not None:
                self._progress.update(row, description=f"  {escape(target.name)}: {escape(message)}")

    def finished(self, target: api.Target, result: api.TargetResult) -> None:
        with self._lock:
            if (row := self._rows.pop(target.name, None)) is not None:
                self._progress.remove_task(row)
            if self._overall is not None:
                self._progress.advance(self._overall)


@contextmanager
def events(quiet: bool) -> Iterator[api.FleetEvents]:
    """The rollout's events: nothing when ``quiet`` (--json), a live display on a terminal, else lines."""
    if quiet:
        yield api.FleetEvents()
        return
    if not stderr.is_terminal:
        yield _Lines()
        return
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=stderr, transient=True)
    with progress:
        yield _Live(progress)


def render(report: api.FleetReport, as_json: bool, *, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        print_json({**report.as_json(), **(extra or {})})
        return
    counted = "pending" if report.command in ("status", "check") else "applied"
    table = Table(title=f"{report.command} on {len(report.results)} target(s), parallel {report.parallel}")
    for column in ("target", "result", "s", counted, "error"):
        table.add_column(column, overflow="fold", no_wrap=column in ("result", "s"))
    for r in report.results:
        colour = _COLOURS.get(r.result, "white")
        name = escape(r.target) + (" [dim](canary)[/]" if r.canary else "")
        count = r.pending if counted == "pending" else r.applied
        table.add_row(name, f"[{colour}]{r.result}[/]", f"{r.duration_s:.1f}" if r.result != "not started" else "",
                      str(count) if r.result != "not started" else "", escape(r.error or ""))
    stdout.print(table)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(report.counts.items()))
    stdout.print(f"{counts} in {report.duration_s:.1f} s" + (f"; stopped: {escape(report.stopped)}"
                                                            if report.stopped else ""))


def write_html(path: str | None, report: api.FleetReport | api.FleetDeployReport) -> None:
    if path is not None:
        with open(path, "w", encoding="utf-8") as out:
            out.write(api.render_fleet_html(report))


def html_needs_targets(html_path: str | None, targets_file: str | None, command: str) -> None:
    if html_path is not None and targets_file is None:
        raise UsageError(f"--html of `pgshift {command}` writes the --targets summary; it needs --targets FILE.",
                         hint=f"add --targets FILE, or run `pgshift {command}` without --html.")


def render_deploy(report: api.FleetDeployReport, as_json: bool) -> None:
    """The summary table, then the fleet-wide steps and what the failure policy did."""
    if as_json:
        print_json(report.to_json())
        return
    render(report.summary(), False)
    stdout.print(f"[bold]deploy {report.deploy_id}[/]{' (resumed)' if report.resumed else ''}: {report.outcome}")
    for step in report.steps:
        stdout.print(f"  {step.state:>7} {step.name:<9} {escape(step.detail)}")
        for line in step.output[-10:]:
            stdout.print(f"            [dim]| {escape(line)}[/]")
    for version, due in report.contract_due.items():
        stdout.print(f"  contract of {version} due after {due}: run `pgshift contract --version {version}` on each "
                     "target then")
    for line in report.undo:
        stdout.print(f"  [yellow]undo[/]: {escape(line)}")


def refuse(flag: str, command: str) -> None:
    """A flag that means one database, given with --targets."""
    raise UsageError(f"{flag} cannot be combined with --targets: it shows one database.",
                     hint=f"run `pgshift {command} {flag} --database-url URL` on one target of the file.")
