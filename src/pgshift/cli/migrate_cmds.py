"""init, new, status, migrate, rollback, validate, baseline, history: rendering only."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from pgshift import api
from pgshift.cli import fleet_view
from pgshift.cli.common import handle_errors, json_option, print_json, settings_options, stdout
from pgshift.config import Settings
from pgshift.errors import ValidationFailed


def _note(message: str) -> None:
    # Plain click output: one line per migration must stay cheap when there are hundreds.
    click.echo(click.style("· ", dim=True) + message, err=True)


def _migration_json(m: api.Migration, state: str) -> dict[str, Any]:
    return {"version": m.version, "name": m.name, "state": state, "kind": m.kind,
            "file": str(m.path), "reversible": m.reversible, "transactional": m.transactional,
            "error": str(m.error) if m.error else None, "down_error": str(m.down_error) if m.down_error else None}


def _status_json(entry: api.MigrationStatus) -> dict[str, Any]:
    return {**_migration_json(entry.migration, entry.state), "display_state": entry.display_state,
            "expand_phase": entry.expand_phase, "applied_at": entry.applied_at, "duration_ms": entry.duration_ms}


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        click.echo(click.style("warning", fg="yellow") + f": {warning}", err=True)


def _short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _step_json(r: api.StepResult) -> dict[str, Any]:
    return asdict(r)


@click.command("init")
@settings_options
@click.option("--no-database", is_flag=True, help="Only create the folder and pgshift.toml.")
@handle_errors
def init_cmd(settings: Settings, no_database: bool) -> None:
    """Create the migrations folder, a pgshift.toml, and (with a database) the history ledger."""
    report = api.init(settings, with_database=not no_database)
    if report.existing:
        stdout.print(f"using the existing migrations folder {escape(report.existing)}")
    for path in report.created:
        stdout.print(f"created {escape(path)}")
    if report.ledger_created:
        stdout.print(f"history ledger ready in schema {settings.history_schema}")
    if not report.created and not report.ledger_created:
        stdout.print("nothing to do: already initialised")


@click.command("new")
@settings_options
@click.argument("name")
@handle_errors
def new_cmd(settings: Settings, name: str) -> None:
    """Write a timestamped migration skeleton with up and down parts."""
    click.echo(str(api.new(settings, name)))


@click.command("status")
@settings_options
@json_option
@click.option("--exit-code", is_flag=True, help="Exit 1 when migrations are pending.")
@fleet_view.targets_option
@handle_errors
def status_cmd(settings: Settings, as_json: bool, exit_code: bool, targets_file: str | None) -> None:
    """Applied, pending and failed migrations, and problems with the files."""
    if targets_file is not None:
        with fleet_view.events(quiet=as_json) as events:
            fleet = api.status_targets(settings, targets_file, events=events)
        fleet_view.render(fleet, as_json)
        fleet.raise_for_failures(f"pgshift status --targets {targets_file}")
        if exit_code and any(r.pending for r in fleet.results):
            sys.exit(1)
        return
    report = api.status(settings)
    plan = report.plan
    if as_json:
        print_json({
            "format": report.format, "server_version": report.server_version,
            "migrations": [_status_json(entry) for entry in report.migrations],
            "expanded": report.expanded,
            "pending": [m.version for m in plan.pending],
            "counts": report.counts,
            "problems": [asdict(p) for p in plan.problems],
            "warnings": report.warnings,
            "interrupted": [asdict(i) for i in report.interrupted],
            "running_now": report.running_now,
            "contract_due": {v: {"expanded_at": since.isoformat(), "due_at": due.isoformat()}
                             for v, (since, due) in report.contract_due.items()},
        })
    else:
        table = Table(title=f"{settings.migrations_path} ({report.format}) on PostgreSQL {report.server_version}")
        for col in ("version", "name", "state", "applied", "ms"):
            table.add_column(col)
        colours = {"applied": "green", "pending": "yellow", "failed": "red", "running": "red",
                   "rolled_back": "cyan", "baseline": "blue", "changed": "yellow"}
        for entry in report.migrations:
            colour = colours.get(entry.display_state.split()[0], "white")
            table.add_row(entry.migration.version, entry.migration.name, f"[{colour}]{entry.display_state}[/]",
                          entry.applied_at.strftime("%Y-%m-%d %H:%M:%S") if entry.applied_at else "",
                          str(entry.duration_ms) if entry.duration_ms is not None else "")
        stdout.print(table)
        counts = report.counts
        stdout.print(f"{counts['applied']} applied, {counts['pending']} pending, "
                     + "".join(f"{counts[state]} {state}, " for state in ("interrupted", "failed") if counts[state])
                     + f"{counts['problems']} problem(s)")
        if report.running_now:
            stdout.print(f"[yellow]running now[/]: a pgshift run holds the deploy lock: {escape(report.running_now)}; "
                         "what it is applying may still finish", highlight=False)
        for i in report.interrupted:
            stdout.print(f"[red]{i.state}[/]: {escape(i.detail)}", highlight=False)
        for p in plan.problems:
            stdout.print(f"[red]problem[/] ({p.kind}): {escape(p.detail)}")
        _warn(report.warnings)
    if exit_code and plan.pending:
        sys.exit(1)


@click.command("migrate")
@settings_options
@json_option
@click.option("--to", "to", default=None, help="Apply up to and including this version.")
@click.option("--dry-run", is_flag=True, help="Print the exact SQL and transaction boundaries; change nothing.")
@click.option("--repair", is_flag=True, help="Accept edited applied files (records their new checksums).")
@click.option("--out-of-order", is_flag=True, default=None, help="Apply new files older than applied ones.")
@click.option("--no-lint", is_flag=True, help="Do not refuse on lint findings at or above lint.fail_level.")
@click.option("--no-backup", is_flag=True,
              help="Skip the backup that backup.policy asks for, and allow destructive changes without one.")
@click.option("--watch", is_flag=True,
              help="Watch the database while migrating ([watch] thresholds); a breach stops at the next step "
              "(a running statement is cancelled).")
@fleet_view.targets_option
@handle_errors
def migrate_cmd(settings: Settings, as_json: bool, to: str | None, dry_run: bool, repair: bool,
                out_of_order: bool | None, no_lint: bool, no_backup: bool, watch: bool,
                targets_file: str | None) -> None:
    """Apply pending migrations, each in its own transaction unless it cannot be.

    First, under the deploy lock, the pending migrations are linted against the live server
    (refusing on errors) and a backup is taken according to backup.policy. With --targets, on
    every database the file lists: canary first, then [targets] parallel at a time.
    """
    if targets_file is not None:
        if dry_run:
            fleet_view.refuse("--dry-run", "migrate")
        with fleet_view.events(quiet=as_json) as events:
            fleet = api.migrate_targets(settings, targets_file, to=to, repair=repair, out_of_order=out_of_order,
                                        lint=not no_lint, backup=not no_backup, events=events)
        fleet_view.render(fleet, as_json)
        fleet.raise_for_failures(f"pgshift migrate --targets {targets_file}")
        return
    notify = None if as_json else _note
    checks = api.MigrateChecks(lint=not no_lint, backup=not no_backup, notify=notify)
    if watch and not dry_run:
        report, _watched = api.migrate_watched(settings, to=to, repair=repair, out_of_order=out_of_order,
                                               notify=notify, checks=checks)
    else:
        report = api.migrate(settings, to=to, dry_run=dry_run, repair=repair, out_of_order=out_of_order,
                             notify=notify, checks=checks)
    if as_json:
        print_json({
            "applied": [_step_json(r) for r in report.applied],
            "dry_run": [{"version": s.migration.version, "mode": s.mode, "sql": s.sql} for s in report.dry_run],
            "nothing_to_do": report.nothing_to_do,
            "lint": [f.to_json() for f in checks.findings],
            "backup": checks.backup_path,
            "warnings": report.warnings,
            "standbys_replayed": report.standbys_replayed,
        })
        return
    if dry_run:
        _warn(report.warnings)  # a real run told them through notify before it started
        for step in report.dry_run:
            click.echo(step.sql + "\n")
    if report.nothing_to_do:
        stdout.print("nothing to migrate: the database is up to date")
    for r in report.applied:
        extra = f", {r.retries} lock retries" if r.retries else ""
        extra += f", resumed at statement {r.resumed_at + 1}" if r.resumed_at is not None else ""
        click.echo(f"{click.style('applied', fg='green')} {r.version} {r.name} ({r.mode}, {r.duration_ms} ms{extra})")
    if report.standbys_replayed:
        click.echo(f"replayed on every standby: {', '.join(report.standbys_replayed)}")


@click.command("rollback")
@settings_options
@json_option
@click.option("--to", "to", default=None, help="Roll back every migration newer than this version.")
@click.option("--steps", default=1, show_default=True, type=click.IntRange(min=1),
              help="How many of the newest applied migrations to roll back.")
@handle_errors
def rollback_cmd(settings: Settings, as_json: bool, to: str | None, steps: int) -> None:
    """Run down parts, newest first; refuses if any needed down part is missing."""
    report = api.rollback(settings, to=to, steps=steps, notify=None if as_json else _note)
    if as_json:
        print_json({"rolled_back": [_step_json(r) for r in report.reverted],
                    "nothing_to_do": report.nothing_to_do})
        return
    if report.nothing_to_do:
        stdout.print("nothing to roll back")
    for r in report.reverted:
        click.echo(f"{click.style('rolled back', fg='cyan')} {r.version} {r.name} ({r.duration_ms} ms)")


@click.command("validate")
@settings_options
@json_option
@click.option("--repair", is_flag=True, help="Record the new checksums of edited applied files.")
@handle_errors
def validate_cmd(settings: Settings, as_json: bool, repair: bool) -> None:
    """Check every applied migration against its file: edited, deleted, out of order."""
    report = api.validate(settings, repair=repair)
    if as_json:
        print_json({"checked": report.checked, "repaired": report.repaired,
                    "problems": [asdict(p) for p in report.problems]})
    else:
        for version in report.repaired:
            stdout.print(f"[yellow]repaired[/] checksum of {version}")
        for p in report.problems:
            stdout.print(f"[red]{p.kind}[/] {p.version} {escape(p.name)}: {escape(p.detail)}")
        if not report.problems:
            stdout.print(f"ok: {report.checked} applied migration(s) match their files")
    if report.problems:
        sys.exit(ValidationFailed.exit_code)


@click.command("baseline")
@settings_options
@click.argument("version")
@handle_errors
def baseline_cmd(settings: Settings, version: str) -> None:
    """Adopt an existing database: VERSION and older count as applied and never run."""
    found = api.baseline(settings, version)
    stdout.print(f"baseline recorded at {version}" + (f" ({escape(found.name)})" if found else ""))


@click.command("history")
@settings_options
@json_option
@click.option("--limit", default=50, show_default=True, help="How many events to show.")
@handle_errors
def history_cmd(settings: Settings, as_json: bool, limit: int) -> None:
    """The ledger's rows and its append-only event log."""
    rows, events = api.history_events(settings, limit)
    if as_json:
        print_json({"migrations": [asdict(r) for r in rows], "events": events})
        return
    table = Table(title="events")
    for col in ("at", "version", "event", "actor", "detail"):
        table.add_column(col)
    for e in events:
        table.add_row(e["at"].strftime("%Y-%m-%d %H:%M:%S"), e["version"] or "", e["event"], e["actor"],
                      _short(", ".join(f"{k}={v}" for k, v in (e["detail"] or {}).items() if v is not None)))
    stdout.print(table)


@click.command("adopt")
@settings_options
@json_option
@click.option("--from", "tool", required=True,
              type=click.Choice(["prisma", "flyway", "dbmate", "goose", "golang-migrate"]),
              help="The tool whose history table to import.")
@click.option("--schema", default=None, help="Schema of that tool's table (default: search_path).")
@click.option("--table", default=None, help="The table's name, if the tool was configured with another.")
@handle_errors
def adopt_cmd(settings: Settings, as_json: bool, tool: str, schema: str | None, table: str | None) -> None:
    """Import another tool's applied migrations so pgshift never re-runs them."""
    report = api.adopt(settings, tool, schema=schema, table=table)
    if as_json:
        print_json(asdict(report))
        return
    stdout.print(f"adopted {len(report.adopted)} migration(s) from {tool}; {len(report.already)} were already "
                 f"recorded; {len(report.pending)} pending")
    if report.baseline is not None:
        stdout.print(f"{tool}'s baseline {report.baseline} recorded as pgshift's baseline: "
                     f"{len(report.below_baseline)} file(s) at or below it count as applied and never run")
    for version in report.unknown:
        stdout.print(f"[yellow]warning[/]: {tool} applied {version}, which has no file in "
                     f"{settings.migrations_path}")
    _warn(report.warnings)


COMMANDS = [
    adopt_cmd, init_cmd, new_cmd, status_cmd, migrate_cmd, rollback_cmd, validate_cmd, baseline_cmd, history_cmd,
]
