"""``pgshift deploy``: flags and rendering only (the flow is pgshift.api.deploy)."""

from __future__ import annotations

import click
from rich.markup import escape

from pgshift import api
from pgshift.cli import fleet_view
from pgshift.cli.common import handle_errors, json_option, print_json, settings_options, stderr, stdout
from pgshift.config import Settings

_COLOURS = {"done": "green", "skipped": "dim", "failed": "red", "started": "yellow"}


def _render(report: api.DeployReport) -> None:
    if report.dry_run:
        stdout.print("[bold]pgshift deploy --dry-run[/]: the plan (nothing is changed)")
        for line in report.plan:
            stdout.print(f"  {escape(line)}")
        return
    resumed = " (resumed)" if report.resumed else ""
    stdout.print(f"[bold]deploy {report.deploy_id}[/]{resumed}: {report.outcome}")
    for step in report.steps:
        colour = _COLOURS.get(step.state, "white")
        stdout.print(f"  [{colour}]{step.state:>7}[/] {step.name:<9} {escape(step.detail)}")
        for line in step.output[-10:]:
            stdout.print(f"            [dim]| {escape(line)}[/]")
    for name, totals in report.watch.items():
        peak = totals.get("peak", {})
        stdout.print(f"  watched during {name}: {totals.get('samples', 0)} samples, longest lock wait "
                     f"{peak.get('longest_lock_wait_ms', 0):.0f} ms, at most {peak.get('blocked_sessions', 0):.0f} "
                     "sessions waiting")
    for line in report.undo:
        stdout.print(f"  [yellow]undo[/]: {escape(line)}")
    for version, due in report.contract_due.items():
        stdout.print(f"  contract of {version} due after {due}: run `pgshift contract --version {version}` then")
    if report.runbook:
        stdout.print("[bold]runbook[/]: undo this deploy by hand")
        stdout.print(escape(report.runbook_text()), highlight=False)


@click.command("deploy")
@settings_options
@json_option
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--resume", is_flag=True, help="Continue a deploy that was killed, from the step it stopped at.")
@click.option("--roll-back", "roll_back", is_flag=True,
              help="With --resume: undo the killed deploy instead (deploy.on_failure).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the report as one HTML file (steps, watched metrics, runbook; with --targets the "
              "summary per target).")
@fleet_view.targets_option
@handle_errors
def deploy_cmd(settings: Settings, as_json: bool, dry_run: bool, resume: bool, roll_back: bool,
               html_path: str | None, targets_file: str | None) -> None:
    """Deploy without stopping the application: check, back up, lint, migrate (expand) while watching,
    run deploy.app_command, wait until healthy, watch, contract (now or after deploy.soak).

    A failure after the schema changed rolls back the application and what this deploy applied
    (deploy.on_failure). docs/deploy.md. With --targets: every database's steps on each target
    (canary first, [targets] parallel at a time), the app hook once, then contract every target
    (docs/fleet.md).
    """
    if roll_back and not resume:
        raise click.UsageError("--roll-back goes with --resume (it undoes a deploy that was killed).")
    if targets_file is not None:
        _deploy_fleet(settings, targets_file, as_json=as_json, dry_run=dry_run, resume=resume, roll_back=roll_back,
                      html_path=html_path)
        return

    def note(message: str) -> None:
        if not as_json:
            stderr.print(f"[dim]·[/] {escape(message)}")

    try:
        report = api.deploy(settings, dry_run=dry_run, resume=resume, roll_back=roll_back, notify=note)
    except api.DeployError as exc:
        if exc.report is not None:
            if html_path:
                _write_html(html_path, exc.report)
            if as_json:
                print_json(exc.report.to_json())
            else:
                _render(exc.report)
        raise
    if html_path and not report.dry_run:
        _write_html(html_path, report)
    if as_json:
        print_json(report.to_json())
    else:
        _render(report)


def _deploy_fleet(settings: Settings, targets_file: str, *, as_json: bool, dry_run: bool, resume: bool,
                  roll_back: bool, html_path: str | None) -> None:
    if dry_run:
        fleet_view.refuse("--dry-run", "deploy")

    def note(message: str) -> None:
        if not as_json:
            stderr.print(f"[dim]·[/] {escape(message)}")

    try:
        with fleet_view.events(quiet=as_json) as events:
            report = api.deploy_targets(settings, targets_file, resume=resume, roll_back=roll_back, events=events,
                                        notify=note)
    except api.FleetDeployFailed as exc:
        if exc.fleet is not None:
            fleet_view.write_html(html_path, exc.fleet)
            fleet_view.render_deploy(exc.fleet, as_json)
        raise
    fleet_view.write_html(html_path, report)
    fleet_view.render_deploy(report, as_json)


def _write_html(path: str, report: api.DeployReport) -> None:
    with open(path, "w", encoding="utf-8") as out:
        out.write(api.render_deploy_html(report))


COMMANDS = [deploy_cmd]
