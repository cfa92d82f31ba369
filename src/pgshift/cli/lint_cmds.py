"""``pgshift lint``: check migrations for locking, rewrites, data loss and app breakage."""

from __future__ import annotations

import gc
import os
import sys

import click

from pgshift import api
from pgshift.cli.common import handle_errors, settings_options
from pgshift.config import Settings


@click.command("lint")
@click.argument("paths", nargs=-1)
@settings_options
@click.option("--output-format", "-o", "output", type=click.Choice(api.LINT_OUTPUT_FORMATS), default=None,
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
    # The report (tens of thousands of findings and statements) holds no cycles: the collector's passes
    # over it would free nothing. The linter pauses it while it works; this keeps it paused until the
    # report is written (and then on again, for callers that run the command in-process).
    enabled = gc.isenabled()
    gc.disable()
    try:
        _lint(paths, settings, output, as_json, pg_version, live_url, schema_file, fail_level, assume_in_transaction,
              locks, fix, down)
    finally:
        if enabled:
            gc.enable()


def _lint(paths: tuple[str, ...], settings: Settings, output: str | None, as_json: bool, pg_version: int | None,
          live_url: str | None, schema_file: str | None, fail_level: str | None, assume_in_transaction: bool,
          locks: bool, fix: bool, down: bool) -> None:
    fmt = "json" if as_json else output or ("github" if os.environ.get("GITHUB_ACTIONS") == "true" else "tty")
    options = api.LintOptions(pg_version=pg_version, database_url=live_url, schema_file=schema_file,
                              fail_level=fail_level, assume_in_transaction=assume_in_transaction, locks=locks,
                              fix=fix, down=down)
    outcome = api.lint(settings, paths, options)
    if outcome.fix is not None:
        for path in outcome.fix.changed:
            click.echo(f"fixed {path}", err=True)
        for path in outcome.fix.created:
            click.echo(f"wrote {path} (runs outside a transaction)", err=True)
    if fmt == "tty" and sys.stdout.isatty():
        from pgshift.cli.common import stdout

        api.render_lint(outcome.report, fmt, stdout, show_locks=locks)
    else:  # a machine format, or tty piped: the stream itself (rich is imported only to colour it)
        api.render_lint(outcome.report, fmt, sys.stdout, show_locks=locks)
    if outcome.report.parse_errors:
        sys.exit(2)
    sys.exit(1 if outcome.failed else 0)


COMMANDS = [lint]
