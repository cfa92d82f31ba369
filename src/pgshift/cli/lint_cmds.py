"""``pgshift lint``: check migrations for locking, rewrites, data loss and app breakage."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from pgshift.cli.common import handle_errors, settings_options, stdout
from pgshift.config import Settings
from pgshift.errors import ConfigError
from pgshift.lint.engine import lint_migrations, lint_sql, statements_of
from pgshift.lint.fix import apply_fixes
from pgshift.lint.model import LintReport, TableSize, lint_verdict
from pgshift.lint.reporters import FORMATS, render
from pgshift.lint.schema import Schema, schema_from_dump
from pgshift.migrations.loader import load_migrations
from pgshift.migrations.model import Migration


def _merge(into: LintReport, other: LintReport) -> None:
    into.findings.extend(other.findings)
    into.parse_errors.extend(other.parse_errors)
    into.lock_steps.extend(other.lock_steps)
    into.files += other.files
    into.statements += other.statements


class _Run:
    def __init__(self, settings: Settings, pg_version: int, sizes: dict[str, TableSize], schema: Schema,
                 locks: bool, fix: bool, down: bool = True, live_url: str | None = None) -> None:
        self.settings, self.pg_version, self.sizes, self.schema = settings, pg_version, sizes, schema
        from pgshift.lint.context import RunState

        # One run for every path given: a table a file creates is new in the files after it.
        self.run_state = RunState(dict(sizes), live_url is not None)
        self.live_url = live_url
        self.locks, self.fix, self.down = locks, fix, down
        self.report = LintReport(pg_version=pg_version)
        self.statements: dict[tuple[str, int, int], str] = {}

    def text(self, text: str, file: str) -> None:
        if self.fix:  # --fix needs each statement's exact text; the second split is only paid then
            for statement in statements_of(text, file):
                self.statements[(file, statement.line, statement.column)] = statement.sql
        lint_sql(text, file=file, settings=self.settings.lint, pg_version=self.pg_version, sizes=self.sizes,
                 schema=self.schema, collect_locks=self.locks, report=self.report, run=self.run_state)

    def folder(self, path: Path) -> None:
        # A file that does not parse loads with its error, which the engine reports; every other
        # file is still linted by its own format's rules (up and down parts apart).
        _, migrations = load_migrations(path, self.settings.format)
        for migration in migrations:
            for s in [*migration.up, *((migration.down or []) if self.down else [])]:
                self.statements[(s.file, s.line, s.column)] = s.sql
        if self.live_url:  # exactly as migrate's gate and `check` lint what the database has pending
            _merge(self.report, self._pending(migrations))
            return
        _merge(self.report, lint_migrations(migrations, settings=self.settings.lint, pg_version=self.pg_version,
                                            sizes=self.sizes, schema=self.schema, collect_locks=self.locks,
                                            rollback=self.down, run=self.run_state))

    def _pending(self, migrations: list[Migration]) -> LintReport:
        """What the database's ledger has applied is history there; the rest, .ops migrations
        included, is linted by the gate's own function (pgshift.lint.live.lint_pending)."""
        from pgshift.db.connect import connect
        from pgshift.lint.live import lint_pending, split_by_ledger

        assert self.live_url is not None
        with connect(self.live_url, application_name="pgshift-lint") as conn:
            history, pending = split_by_ledger(conn, self.settings.history_schema, migrations)
            return lint_pending(conn, self.settings.lint, pending, history,
                                history_schema=self.settings.history_schema, schema=self.schema,
                                pg_version=self.pg_version, rollback=self.down, collect_locks=self.locks,
                                run=self.run_state)


def _target_version(flag: int | None, settings: Settings, live: int | None) -> int:
    # The server's own version over the configured target: migrate's gate judges by the server's.
    version = flag or live or settings.lint.pg_version or 16
    if not 10 <= version <= 30:
        raise ConfigError(f"--pg-version {version} is not a PostgreSQL major version (10 to 30).")
    return version


@click.command("lint")
@click.argument("paths", nargs=-1)
@settings_options
@click.option("--output-format", "-o", "output", type=click.Choice(FORMATS), default=None,
              help="tty, json, sarif, github or gitlab (default: github under GitHub Actions, else tty).")
@click.option("--json", "as_json", is_flag=True, help="Same as --output-format json.")
@click.option("--pg-version", type=int, default=None, help="Target PostgreSQL major version.")
@click.option("--database", "live_url", default=None,
              help="Read table sizes and the server version from this database to rank findings by impact.")
@click.option("--schema", "schema_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="A pg_dump --schema-only file describing the tables the migrations change.")
@click.option("--fail-level", type=click.Choice(["error", "warning", "note"]), default=None,
              help="Lowest severity that makes the exit code 1 (default: lint.fail_level).")
@click.option("--assume-in-transaction", is_flag=True, default=False,
              help="Treat plain SQL files as running inside one transaction.")
@click.option("--locks", is_flag=True, help="Also show the locks held after each statement.")
@click.option("--fix", is_flag=True, help="Write the mechanical safe rewrite where there is one.")
@click.option("--down/--no-down", default=True,
              help="Also lint each migration's down part for the locks its rollback takes (default: on).")
@handle_errors
def lint(paths: tuple[str, ...], settings: Settings, output: str | None, as_json: bool, pg_version: int | None,
         live_url: str | None, schema_file: str | None, fail_level: str | None, assume_in_transaction: bool,
         locks: bool, fix: bool, down: bool) -> None:
    """Lint migrations: folders (any supported format), .sql files, or - for stdin.

    Exit codes: 0 clean, 1 findings at or above the fail level, 2 parse or usage error.
    """
    fmt = "json" if as_json else output or ("github" if os.environ.get("GITHUB_ACTIONS") == "true" else "tty")
    if assume_in_transaction:
        settings.lint.assume_in_transaction = True
    live_version: int | None = None
    sizes: dict[str, TableSize] = {}
    if live_url:
        from pgshift.lint.live import live_context

        live_version, sizes = live_context(live_url)
    schema_path = schema_file or settings.lint.schema_file
    schema = schema_from_dump(str(settings.resolve(schema_path))) if schema_path else Schema()
    run = _Run(settings, _target_version(pg_version, settings, live_version), sizes, schema, locks, fix, down,
               live_url=live_url)
    for raw in paths or (str(settings.migrations_path),):
        _lint_path(run, raw)
    report = run.report
    if fix:
        result = apply_fixes(report, run.statements)
        fixed = {id(f) for f in result.fixed}
        report.findings = [f for f in report.findings if id(f) not in fixed]
        for path in result.changed:
            click.echo(f"fixed {path}", err=True)
        for path in result.created:
            click.echo(f"wrote {path} (runs outside a transaction)", err=True)
    render(report, fmt, stdout if fmt == "tty" else _plain(), show_locks=locks)
    verdict = lint_verdict(report, fail_level or settings.lint.fail_level)  # the gate's and `check`'s policy
    if verdict.parse_errors:
        sys.exit(2)
    sys.exit(1 if verdict.blocking else 0)


def _lint_path(run: _Run, raw: str) -> None:
    if raw == "-":
        run.text(sys.stdin.read(), "<stdin>")
        return
    path = Path(raw)
    if path.is_dir():
        run.folder(path)
    elif path.is_file():
        run.text(path.read_text(encoding="utf-8", errors="replace"), str(path))
    else:
        from pgshift.migrations.files import broken_link

        raise click.UsageError(f"{raw} {broken_link(path) or 'is neither a file nor a folder'}.")


def _plain() -> Any:
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False, soft_wrap=True, markup=False)


COMMANDS = [lint]
