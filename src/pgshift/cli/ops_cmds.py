"""``pgshift backfill``, ``pgshift contract``, ``pgshift abort``: rendering only (see pgshift.api)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pgshift import api
from pgshift.cli.common import handle_errors, json_option, print_json, settings_options, stderr, stdout
from pgshift.config import Settings


def _note(message: str) -> None:
    stderr.print(f"[dim]·[/] {escape(message)}")  # messages name tables: "x[/]" is a valid name


@contextmanager
def _bar(as_json: bool, quiet: bool) -> Iterator[api.BackfillProgressCallback | None]:
    """JSON lines on stderr for CI logs, or a rich bar with rows, rows/s and ETA."""
    if as_json:
        def emit(p: api.BackfillProgress) -> None:
            click.echo(api.backfill_progress_json(p), err=True)

        yield emit
        return
    if quiet:
        yield None
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]:>10} rows/s  ETA {task.fields[eta]}  batch {task.fields[batch]}"),
                  TimeElapsedColumn(), console=stderr, transient=False) as bar:
        task = bar.add_task("backfill", total=None, rate="-", eta="-", batch="-")

        def update(p: api.BackfillProgress) -> None:
            eta = "-" if p.eta_s is None else f"{p.eta_s:.0f}s"
            desc = escape(p.table) + (" [yellow](paused: replication lag)[/]" if p.state == "paused-lag" else "")
            bar.update(task, completed=p.rows_done, total=p.total, description=desc, rate=f"{p.rate:,.0f}",
                       eta=eta, batch=f"{p.batch_size} ({p.last_batch_ms:.0f} ms)")

        yield update


@click.command("backfill")
@settings_options
@json_option
@click.option("--table", required=True, help="The table (schema-qualified if not on the search_path).")
@click.option("--set", "set_clause", required=True, help="The SET list, e.g. \"status = 'PENDING'\".")
@click.option("--where", default=None, help="Only rows matching this condition, e.g. \"status IS NULL\".")
@click.option("--key", default=None, help="Comma-separated key columns (default: primary key, unique key, ctid).")
@click.option("--job", default=None, help="Name of the resumable job (default: derived from table/SET/WHERE).")
@click.option("--target-ms", default=75, show_default=True, type=click.IntRange(1),
              help="Target batch duration; application writes to a batch's rows wait up to this long.")
@click.option("--min-batch", default=100, show_default=True, type=click.IntRange(1))
@click.option("--max-batch", default=50_000, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", "initial", default=1_000, show_default=True, type=click.IntRange(1),
              help="Initial batch size.")
@click.option("--pause", default="0ms", show_default=True, help="Sleep between batches.")
@click.option("--statement-timeout", default="5s", show_default=True, help="statement_timeout of each batch.")
@click.option("--lock-timeout", default="1s", show_default=True, help="lock_timeout of each batch.")
@click.option("--max-lock", default="100ms", show_default=True,
              help="Longest a batch may hold its row locks; a batch that reaches it is rolled back and done "
                   "again smaller ('off' disables). Batches also halve while sessions wait on their locks.")
@click.option("--max-lag", default=None,
              help="Pause while a standby's replication lag is above this ('off' disables; default: "
                   "backfill.max_lag, 10s).")
@click.option("--max-lag-bytes", default=None,
              help="Pause while a standby has more WAL than this not yet replayed, e.g. '64MB' ('off' disables; "
                   "default: backfill.max_lag_bytes, off). Unlike the time lag, it grows at once when replay stops.")
@click.option("--lag-query", default=api.DEFAULT_LAG_QUERY, help="SQL returning the current lag in seconds.")
@click.option("--restart", is_flag=True, help="Forget saved progress of this job and start over.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--watch", is_flag=True, help="Pause the batches while a [watch] threshold is crossed.")
@click.option("--no-backup", is_flag=True, help="Skip the backup that backup.policy = \"always\" asks for first.")
@handle_errors
def backfill_cmd(settings: Settings, as_json: bool, table: str, set_clause: str, where: str | None,
                 key: str | None, job: str | None, target_ms: int, min_batch: int, max_batch: int, initial: int,
                 pause: str, statement_timeout: str, lock_timeout: str, max_lock: str, max_lag: str | None,
                 max_lag_bytes: str | None, lag_query: str, restart: bool, quiet: bool, watch: bool,
                 no_backup: bool) -> None:
    """Update many rows in short keyset batches: resumable, throttled, adaptive.

    The correct form of ``UPDATE t SET ... WHERE ... LIMIT n`` loops. Rerun the same command after
    an interruption and it continues after the last committed batch. It overwrites rows, so under
    backup.policy = "always" it backs up first, as `migrate` does.
    """
    options = api.backfill_options(
        target_ms=target_ms, min_batch=min_batch, max_batch=max_batch, batch_size=initial, pause=pause,
        statement_timeout=statement_timeout, lock_timeout=lock_timeout, max_lock=max_lock, max_lag=max_lag,
        max_lag_bytes=max_lag_bytes, lag_query=lag_query, settings=settings.backfill)
    spec = api.backfill_spec(table, set_clause, where, key, job)
    notify = None if as_json else _note
    checks = api.MigrateChecks(lint=False, backup=not no_backup, notify=notify)
    with _bar(as_json, quiet) as progress:
        result = api.backfill(settings, spec, options, progress=progress, notify=notify, restart=restart,
                              checks=checks, watch=watch)
    data: dict[str, Any] = asdict(result)
    data.pop("batch_ms")
    data["backup"] = checks.backup_path
    if as_json:
        print_json(data)
        return
    if result.already_done:
        stdout.print(f"backfill {escape(result.job)} was already complete ({result.rows} rows); --restart runs it "
                     "again")
        return
    rate = result.rows_this_run / result.duration_s if result.duration_s else 0.0
    resumed = " (resumed)" if result.resumed else ""
    yielded = f" ({result.waited_batches} with sessions waiting on them)" if result.waited_batches else ""
    stdout.print(f"[green]backfilled[/] {result.rows_this_run} rows of {escape(result.table)}{resumed} in "
                 f"{result.batches} batches{yielded}, {result.duration_s:.1f}s, {rate:,.0f} rows/s, "
                 f"longest batch {result.max_batch_ms:.0f} ms, keyed by {escape(result.mode)}")
    sys.stdout.flush()


def _phase_output(result: api.PhaseResult, as_json: bool, verb: str) -> None:
    if as_json:
        print_json(asdict(result))
        return
    for warning in result.warnings:
        stdout.print(f"[yellow]warning[/] {escape(warning)}")
    extra = f", {result.lock_retries} lock retries" if result.lock_retries else ""
    extra += f", resumed at step {result.resumed_at + 1}" if result.resumed_at is not None else ""
    stdout.print(f"[green]{verb}[/] {result.version} {escape(result.name)} ({result.steps} steps, "
                 f"{result.duration_ms} ms{extra})")


@click.command("contract")
@settings_options
@json_option
@click.option("--version", "version", default=None, help="The expanded migration (default: the active one).")
@click.option("--no-backup", is_flag=True,
              help="Skip the backup that backup.policy asks for before a contract (always, or when it drops "
                   "data), and allow a contract that drops data without one.")
@click.option("--force", is_flag=True, help="Contract even before the soak `pgshift deploy` recorded has passed.")
@handle_errors
def contract_cmd(settings: Settings, as_json: bool, version: str | None, no_backup: bool, force: bool) -> None:
    """Finish an expanded operations migration, after the new app version is deployed everywhere.

    Validates constraints, sets NOT NULL through a validated CHECK, attaches unique indexes, and drops
    the old columns, sync triggers, compatibility views and the version schema. It first backs up
    according to backup.policy, as `migrate` does (always, or when it drops columns or tables).
    """
    notify = None if as_json else _note
    checks = api.MigrateChecks(lint=False, backup=not no_backup, notify=notify)
    result = api.contract(settings, version=version, notify=notify, checks=checks, force=force)
    if as_json:
        print_json({**asdict(result), "backup": checks.backup_path})
        return
    _phase_output(result, as_json, "contracted")


@click.command("abort")
@settings_options
@json_option
@click.option("--version", "version", default=None, help="The expanded migration (default: the active one).")
@handle_errors
def abort_cmd(settings: Settings, as_json: bool, version: str | None) -> None:
    """Undo an expanded (or interrupted) operations migration; it becomes pending again."""
    result = api.abort(settings, version=version, notify=None if as_json else _note)
    _phase_output(result, as_json, "aborted")


COMMANDS: list[click.Command] = [backfill_cmd, contract_cmd, abort_cmd]
