"""``pgshift backup`` (+ ``backup verify``, ``backup list``), ``pgshift restore``, ``pgshift check``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from pgshift import api
from pgshift.cli import fleet_view
from pgshift.cli.common import handle_errors, json_option, print_json, settings_options, stderr, stdout
from pgshift.config import Settings


@contextmanager
def _progress(enabled: bool) -> Iterator[api.BackupProgress | None]:
    """A bar on stderr (by table bytes, from pg_dump --verbose) when stderr is a terminal."""
    if not enabled or not stderr.is_terminal:
        yield None
        return
    with Progress(TextColumn("[bold]pg_dump[/] {task.description}"), BarColumn(), DownloadColumn(),
                  TimeElapsedColumn(), console=stderr, transient=True) as bar:
        task = bar.add_task("starting", total=None)

        def update(done: int, total: int, table: str) -> None:
            bar.update(task, completed=done, total=total or None, description=table)

        yield update


def _backup_row(b: api.Backup) -> dict[str, Any]:
    last = b.last_verification()
    return {"path": str(b.path), "database": b.manifest.database, "finished_at": b.manifest.finished_at,
            "format": b.manifest.format, "size_bytes": b.size_bytes, "tables": len(b.manifest.tables),
            "history_head": b.manifest.history_head,
            "verified": last["level"] if last else None}


def _report_incomplete(found: list[api.Incomplete]) -> None:
    for item in found:
        stderr.print(f"[yellow]note[/] {escape(item.describe())}", highlight=False)


@click.group("backup", invoke_without_command=True)
@click.option("--dump-format", "-F", "dump_format", type=click.Choice(["custom", "directory"]), default=None,
              help="pg_dump format (default backup.format; --jobs > 1 implies directory).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None, help="Parallel pg_dump jobs.")
@click.option("--to", "directory", default=None, help="Backup folder (default backup.directory).")
@click.option("--keep", type=click.IntRange(0), default=None,
              help="Keep the N newest backups of this database (never the newest verified one).")
@click.option("--no-verify", is_flag=True, help="Skip the quick verification after the dump.")
@settings_options
@json_option
@click.pass_context
@handle_errors
def backup_cmd(ctx: click.Context, settings: Settings, dump_format: str | None, jobs: int | None,
               directory: str | None, keep: int | None, no_verify: bool, as_json: bool) -> None:
    """Dump the database with pg_dump, write a manifest and verify it (quick).

    Subcommands: `backup verify BACKUP [--restore-test]`, `backup list`."""
    if ctx.invoked_subcommand is not None:
        return
    with _progress(not as_json) as progress:
        result = api.backup(settings, fmt=dump_format, jobs=jobs, directory=directory, keep=keep,
                            verify=not no_verify, progress=progress)
    b = result.backup
    data = {**_backup_row(b), "seconds": round(result.seconds, 3), "dump_seconds": round(result.dump_seconds, 3),
            "pg_dump": f"{result.tool.path} {result.tool.version}", "removed": [str(p) for p in result.removed],
            "incomplete": [{"path": str(i.path), "state": i.state} for i in result.incomplete]}
    _report_incomplete(result.incomplete)
    if as_json:
        print_json(data)
        return
    rows = sum(t.rows or 0 for t in b.manifest.tables)
    uncounted = sum(1 for t in b.manifest.tables if t.rows is None)
    later = f" (+ {uncounted} large table(s), counted in the archive at the first verification)" if uncounted else ""
    stdout.print(f"backup {b.path}: {len(b.manifest.tables)} table(s), {rows} rows{later}, "
                 f"{b.size_bytes / 1e6:.1f} MB in {result.seconds:.1f}s ({data['pg_dump']})")
    if result.verification is not None:
        stdout.print("verified (quick): " + "; ".join(result.verification.passed))
    if result.unrecorded:
        stderr.print(f"[yellow]note[/] the backup was not recorded in the history ({escape(result.unrecorded)}); "
                     "`latest` finds it only if it is in backup.directory", highlight=False)
    for path in result.removed:
        stdout.print(f"removed old backup {path} (--keep {keep if keep is not None else settings.backup.keep})")


@backup_cmd.command("verify")
@click.argument("backup")
@click.option("--restore-test", is_flag=True,
              help="Restore into a scratch database and compare counts, content hashes and schema.")
@settings_options
@json_option
@handle_errors
def verify_cmd(settings: Settings, backup: str, restore_test: bool, as_json: bool) -> None:
    """Check BACKUP (a folder, its name in backup.directory, or 'latest')."""
    report = api.verify_backup(settings, backup, restore_test=restore_test)
    if as_json:
        print_json(report.as_dict())
        return
    for note in report.notes:
        stderr.print(f"[yellow]note[/] {escape(note)}", highlight=False)
    for line in report.passed:
        stdout.print(f"[green]passed[/]  {line}")
    stdout.print(f"backup {report.path} verified ({report.level}) in {report.seconds:.1f}s")


@backup_cmd.command("list")
@click.option("--to", "directory", default=None, help="Backup folder (default backup.directory).")
@settings_options
@json_option
@handle_errors
def list_cmd(settings: Settings, directory: str | None, as_json: bool) -> None:
    """The backups in backup.directory, newest first. Folders a killed backup left without a
    manifest are reported and removed."""
    listing = api.list_backups(settings, directory)
    _report_incomplete(listing.incomplete)
    rows = [_backup_row(b) for b in listing.backups]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        stdout.print(f"{row['finished_at']}  {row['path']}  {row['size_bytes'] / 1e6:.1f} MB  "
                     f"verified: {row['verified'] or 'no'}")


def _confirmation(yes: bool) -> api.Confirm | None:
    """--yes, or an interactive yes; a non-interactive run without --yes stops."""
    return None if yes else _ask


def _ask(question: str) -> None:
    if not sys.stdin.isatty():
        raise click.UsageError(f"{question} Pass --yes to confirm when not running interactively.")
    if not click.confirm(question, default=False):
        raise click.Abort()


@click.command("restore")
@click.argument("backup")
@click.option("--table", "-t", default=None,
              help="Restore only this table (schema.name) into the live database, in one transaction.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask; required when not running interactively.")
@settings_options
@json_option
@handle_errors
def restore_cmd(settings: Settings, backup: str, table: str | None, yes: bool, as_json: bool) -> None:
    """Restore BACKUP safely: verify it fully, stop the app, restore beside the live database,
    compare counts, swap names (the old database is kept), start the app, check its health."""
    if table:
        one = api.restore_table(settings, backup, table, confirm=_confirmation(yes))
        if as_json:
            print_json(one.as_dict())
        else:
            stdout.print(f"restored {one.rows} rows of {one.table} from {Path(one.backup).name}; the previous "
                         f"rows are kept in {one.kept_as}")
        return
    say = None if as_json else (lambda line: stdout.print(line, markup=False))
    report = api.restore_database(settings, backup, confirm=_confirmation(yes), say=say)
    if as_json:
        print_json(report.as_dict())
    else:
        stdout.print(f"restore complete: {report.database} restored from {Path(report.backup).name}; previous "
                     f"data kept as database {report.kept_as}")


_MARK = {"passed": "[green]passed [/]", "warning": "[yellow]warning[/]", "failed": "[red]failed [/]",
         "skipped": "[dim]skipped[/]"}


@click.command("check")
@click.option("--long-running", "long_running", type=float, default=60.0, show_default=True,
              help="Seconds after which an open transaction counts as long-running.")
@click.option("--max-lag", type=float, default=30.0, show_default=True, help="Replication lag allowed (s).")
@settings_options
@json_option
@fleet_view.targets_option
@handle_errors
def check_cmd(settings: Settings, long_running: float, max_lag: float, as_json: bool,
              targets_file: str | None) -> None:
    """The pre-migration checklist: one line per check with its measured value; exit 1 when a
    required check fails (with --targets, on any database the file lists)."""
    thresholds = api.Thresholds(long_running_s=long_running, max_lag_s=max_lag)
    if targets_file is not None:
        with fleet_view.events(quiet=as_json) as events:
            fleet = api.check_targets(settings, targets_file, thresholds, events=events)
        fleet_view.render(fleet, as_json)
        if not fleet.ok:
            sys.exit(1)
        return
    checklist = api.check(settings, thresholds)
    if as_json:
        print_json(checklist.as_dict())
    else:
        for result in checklist.results:
            stdout.print(f"{_MARK[result.status]}  {result.name}: {escape(result.value)}")
            for line in result.detail if result.status != "passed" else []:
                stdout.print(f"           {escape(line)}", highlight=False)
        stdout.print(checklist.summary(), markup=False)
    if not checklist.ok:
        sys.exit(1)


COMMANDS: list[click.Command] = [backup_cmd, restore_cmd, check_cmd]
