"""``pgshift rehearse``: rendering only; the work is pgshift.api.rehearse."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from pgshift import api
from pgshift.cli import fleet_view
from pgshift.cli.common import handle_errors, json_option, print_json, settings_options, stderr, stdout
from pgshift.config import Settings, duration_ms


def _note(message: str) -> None:
    stderr.print(f"[dim]·[/] {message}")


@click.command("rehearse")
@settings_options
@json_option
@click.option("--load", "load_rate", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Synthetic workload in queries/s against the tables the migrations touch (0: none).")
@click.option("--load-threads", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Client connections of the workload.")
@click.option("--stall-budget", default="200ms", show_default=True,
              help="Longest the workload may be blocked by one statement.")
@click.option("--large-table-rows", type=click.IntRange(min=0), default=None,
              help="A rewrite of a table this big fails (default: lint.large_table_rows).")
@click.option("--test-cmd", default=None, help="Run this after migrating, with DATABASE_URL set to the clone.")
@click.option("--from-backup", "from_backup", default=None, metavar="BACKUP",
              help="Make the clone from this backup: a pgshift backup folder, its name in backup.directory, "
                   "'latest', or a pg_dump archive.")
@click.option("--keep", is_flag=True, help="Keep the clone afterwards (its name is printed).")
@click.option("--no-down", is_flag=True, help="Skip the rollback-and-reapply reversibility check.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a self-contained HTML report to this file (with --targets: the summary per target).")
@fleet_view.targets_option
@handle_errors
def rehearse_cmd(settings: Settings, as_json: bool, load_rate: float, load_threads: int, stall_budget: str,
                 large_table_rows: int | None, test_cmd: str | None, from_backup: str | None, keep: bool,
                 no_down: bool, html_file: Path | None, targets_file: str | None) -> None:
    """Prove the pending migrations on a clone of the database, under load, before production.

    Clones the database, applies the pending migrations while recording each statement's locks,
    duration and rewrites (and the workload's latency), runs --test-cmd, rolls back and checks the
    schema comes back identical, applies again, drops the clone and prints a verdict. Exit 18 on fail.
    """
    options = api.RehearsalOptions(
        load_rate=load_rate, load_threads=load_threads,
        stall_budget_ms=duration_ms(stall_budget, key="--stall-budget"), large_table_rows=large_table_rows,
        test_cmd=test_cmd, keep=keep, check_down=not no_down,
        # As `backup verify` and `restore` take it (--targets refuses it: an archive is one database's).
        from_backup=None if from_backup is None else (
            Path(from_backup) if targets_file is not None else api.resolve_backup(settings, from_backup)),
    )
    if targets_file is not None:
        with fleet_view.events(quiet=as_json) as events:
            fleet = api.rehearse_targets(settings, targets_file, options, events=events)
        fleet_view.write_html(None if html_file is None else str(html_file), fleet)
        fleet_view.render(fleet, as_json)
        fleet.raise_for_failures(f"pgshift rehearse --targets {targets_file}")
        return
    report = api.rehearse(settings, options, notify=None if as_json else _note)
    if html_file is not None:
        html_file.write_text(api.render_html(report))
        if not as_json:
            _note(f"wrote {html_file}")
    if as_json:
        print_json(api.to_json(report, samples=False))
    else:
        _render(report)
    api.require_pass(report)


def _render(report: api.RehearsalReport) -> None:
    table = Table(title=f"rehearsal of {report.source}")
    for column in ("phase", "statement", "ms", "locks", "rewrite", "worst stall"):
        table.add_column(column, overflow="fold")
    budget = report.options.stall_budget_ms
    for r in report.statements:
        locks = "\n".join(f"{lk.mode} {lk.relation}" for lk in r.locks if lk.kind in ("table", "materialized view"))
        stall = "" if r.worst_latency_ms is None else f"{r.worst_latency_ms:.0f} ms"
        if r.worst_latency_ms is not None and r.worst_latency_ms > budget:
            stall = f"[red]{stall}[/]"
        table.add_row(r.phase, r.sql, f"{r.duration_ms:.0f}", locks, ", ".join(w.table for w in r.rewrites), stall)
    stdout.print(table)
    if report.clone is not None:
        stdout.print(f"clone: {report.clone.method} in {report.clone.duration_s:.2f}s"
                     + (f", kept as {report.clone.name}" if report.kept else ", dropped")
                     + (f"; {report.clone.note}" if report.clone.note else ""), markup=False)
    if report.workload is not None:
        s = report.workload.summary()
        stdout.print(f"workload: {s['queries']} queries, {s['errors']} errors ({s['own_errors']} its own), "
                     f"p99 {s['p99_ms']} ms, max {s['max_ms']} ms")
        for entry in s["error_messages"]:
            cause = "caused by the migration" if entry["cause"] == "migration" else "the workload's own"
            stdout.print(f"  {api.workload_error_text(entry)}: {cause}, in {', '.join(entry['queries'])}", markup=False)
    stdout.print(f"reversibility: {report.schema.reversibility}")
    for change in report.schema.down_diff:
        stdout.print(f"  {change.line()}", markup=False)
    for warning in report.warnings:
        stdout.print(f"[yellow]warning[/]: {warning}")
    if report.passed:
        stdout.print("[bold green]verdict: pass[/]")
    else:
        stdout.print("[bold red]verdict: fail[/]")
        for reason in report.reasons:
            stdout.print(f"  - {reason.message}", markup=False)


COMMANDS = [rehearse_cmd]
