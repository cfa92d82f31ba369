"""`pgshift lint PATH...` as a library call: folders (each in its own format), files and stdin
linted in one run, one merged report, optionally with the safe rewrites written (``--fix``)."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from pgshift.config import LintSettings, Settings
from pgshift.errors import ConfigError, PgshiftError, UsageError
from pgshift.lint.context import RunState, runner_timeouts
from pgshift.lint.engine import lint_file, lint_sql, statements_of
from pgshift.lint.model import LintReport, LintVerdict, TableSize, lint_verdict
from pgshift.lint.schema import Schema, schema_from_dump
from pgshift.migrations.files import broken_link
from pgshift.migrations.loader import available_readers, load_migrations
from pgshift.migrations.model import Migration, Statement

if TYPE_CHECKING:
    from pgshift.lint.fix import FixResult

STDIN = "-"


@dataclass
class LintOptions:
    """The flags of `pgshift lint`; None means the settings' value."""

    pg_version: int | None = None  # target major version (default: lint.pg_version, the server's, 16)
    database_url: str | None = None  # read table sizes, the version and the ledger from this database
    schema_file: str | None = None  # a pg_dump --schema-only file (default: lint.schema_file)
    fail_level: str | None = None  # lowest severity that fails (default: lint.fail_level)
    assume_in_transaction: bool = False  # plain SQL files run inside one transaction
    locks: bool = False  # keep the locks held after each statement
    fix: bool = False  # write the mechanical safe rewrites
    down: bool = True  # also lint down parts, for the locks a rollback takes


@dataclass
class LintOutcome:
    report: LintReport  # without the findings --fix rewrote
    fail_level: str
    fix: FixResult | None = None  # what --fix wrote, when asked

    @property
    def verdict(self) -> LintVerdict:
        """The gate's and `check`'s policy (pgshift.lint.model.lint_verdict) for this report."""
        return lint_verdict(self.report, self.fail_level)

    @property
    def failed(self) -> bool:
        """Findings at or above the fail level (exit 1)."""
        return bool(self.verdict.blocking)


@dataclass
class _Run:
    settings: Settings
    lint: LintSettings
    pg_version: int
    sizes: dict[str, TableSize]
    schema: Schema
    options: LintOptions
    report: LintReport = field(init=False)
    # (file, line, column) -> the statement's exact text, for --fix
    statements: dict[tuple[str, int, int], str] = field(default_factory=dict)
    # The parts --fix may rewrite: their statements' text is looked up once the findings are known.
    fix_parts: list[Sequence[Statement]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # One run for every path given: a table a file creates is new in the files after it.
        # With --database, judged as `migrate` will run them there: under the timeouts it sets.
        live = self.options.database_url is not None
        sets = runner_timeouts(self.settings) if live else frozenset()
        self.run_state = RunState(dict(self.sizes), live, runner_sets=sets)
        self.report = LintReport(pg_version=self.pg_version)

    def text(self, text: str, file: str) -> None:
        if self.options.fix:  # --fix needs each statement's exact text; the second split is only paid then
            for statement in statements_of(text, file):
                self.statements[(file, statement.line, statement.column)] = statement.sql
        lint_sql(text, file=file, settings=self.lint, pg_version=self.pg_version, sizes=self.sizes,
                 schema=self.schema, collect_locks=self.options.locks, report=self.report, run=self.run_state)

    def folder(self, path: Path) -> None:
        # Read by its own format's reader, directives and all. A file that does not parse loads with
        # its error, which the engine reports; every other file is still linted (up and down apart).
        _, migrations = load_migrations(path, self.settings.format)
        self.migrations(migrations)

    def migrations(self, migrations: list[Migration]) -> None:
        down = self.options.down
        for migration in migrations if self.options.fix else ():  # the parts, not their statements (not held)
            self.fix_parts += [migration.up, *([migration.down] if down and migration.down else [])]
        # Their reader knows which migrations run in a transaction (a NO TRANSACTION directive, ...):
        # assume_in_transaction is for plain SQL files only and must not override that.
        read_lint = dataclasses.replace(self.lint, assume_in_transaction=False)
        if self.options.database_url:  # exactly as migrate's gate and `check` lint what the database has pending
            _merge(self.report, self._pending(migrations, read_lint))
            return
        # .ops migrations are replayed into the schema model where they stand, as the gate does.
        from pgshift.lint.opsmodel import lint_in_order  # folders only: a loose file's lint does without it

        _merge(self.report, lint_in_order(migrations, [], settings=read_lint, pg_version=self.pg_version,
                                          sizes=self.sizes, schema=self.schema, run=self.run_state, rollback=down,
                                          collect_locks=self.options.locks))

    def _pending(self, migrations: list[Migration], settings: LintSettings) -> LintReport:
        """What the database's ledger has applied is history there; the rest, .ops migrations
        included, is linted by the gate's own function (pgshift.lint.live.lint_pending)."""
        from pgshift.db.connect import connect
        from pgshift.lint.live import lint_pending, split_by_ledger

        assert self.options.database_url is not None
        with connect(self.options.database_url, application_name="pgshift-lint") as conn:
            history, pending = split_by_ledger(conn, self.settings.history_schema, migrations)
            return lint_pending(conn, settings, pending, history, history_schema=self.settings.history_schema,
                                schema=self.schema, pg_version=self.pg_version, rollback=self.options.down,
                                collect_locks=self.options.locks, run=self.run_state)

    def path(self, raw: str, stdin: TextIO) -> None:
        if raw == STDIN:
            self.text(stdin.read(), "<stdin>")
            return
        path = Path(raw)
        if path.is_dir():
            self.folder(path)
        elif path.is_file():
            own = _migrations_of_file(path, self.settings.format)
            if own is None and not self.options.fix:
                lint_file(path, settings=self.lint, pg_version=self.pg_version, sizes=self.sizes, schema=self.schema,
                          collect_locks=self.options.locks, report=self.report, run=self.run_state)
            elif own is None:  # --fix keeps each statement's text to rewrite it
                self.text(path.read_text(encoding="utf-8", errors="replace"), str(path))
            else:  # read as its folder's tool reads it: markers, directives, up and down parts apart
                self.migrations(own)
        else:
            raise UsageError(f"{raw} {broken_link(path) or 'is neither a file nor a folder'}.")


def _merge(into: LintReport, other: LintReport) -> None:
    into.findings.extend(other.findings)
    into.parse_errors.extend(other.parse_errors)
    into.lock_steps.extend(other.lock_steps)
    into.files += other.files
    into.statements += other.statements


def _migrations_of_file(path: Path, fmt: str) -> list[Migration] | None:
    """The migrations a file of a migrations folder belongs to, read with its folder's format (the
    folder or, for Prisma's <version>/migration.sql, its parent); None for a loose SQL file, or one
    whose folder does not load as a whole (it is then linted as plain SQL, as before)."""
    # Only formats whose file names this one has are asked to read its folder: a loose file in a large
    # tree (a repository root, /tmp) is not worth a recursive scan of everything beside it.
    claimed = {name: module for name, module in available_readers().items() if module.claims(path)}
    if not claimed and fmt == "auto":
        return None
    folders = [path.parent, path.parent.parent] if path.name == "migration.sql" else [path.parent]
    for folder in folders:
        chosen = fmt if fmt != "auto" else next(
            (name for name, module in claimed.items() if module.detect(folder)), None)
        if chosen is None:
            continue
        if chosen == "native" and "-- pgshift:" not in path.read_text(encoding="utf-8", errors="replace"):
            # Numbered .sql files look like a native folder; without pgshift's markers this one is plain SQL.
            return None
        try:
            _, migrations = load_migrations(folder, chosen)
        except PgshiftError:
            return None
        own = [m for m in migrations if m.path.resolve() == path.resolve()
               or any(s.file == str(path) for s in chain(m.up, m.down or []))]
        if own:
            return own
    return None


def target_version(flag: int | None, settings: Settings, live: int | None) -> int:
    # The server's own version over the configured target: migrate's gate judges by the server's.
    version = flag or live or settings.lint.pg_version or 16
    if not 10 <= version <= 30:
        raise ConfigError(f"--pg-version {version} is not a PostgreSQL major version (10 to 30).")
    return version


def lint_paths(settings: Settings, paths: tuple[str, ...] | list[str] = (), options: LintOptions | None = None, *,
               stdin: TextIO | None = None) -> LintOutcome:
    """Lint ``paths`` (folders, .sql files, ``-`` for ``stdin``; default: the migrations folder) as one
    run and return the merged report. With ``options.fix``, the safe rewrites are written first."""
    options = options or LintOptions()
    lint = settings.lint
    if options.assume_in_transaction:
        lint = dataclasses.replace(lint, assume_in_transaction=True)
    live_version: int | None = None
    sizes: dict[str, TableSize] = {}
    if options.database_url:
        from pgshift.lint.live import live_context

        live_version, sizes = live_context(options.database_url)
    schema_path = options.schema_file or settings.lint.schema_file
    schema = schema_from_dump(str(settings.resolve(schema_path))) if schema_path else Schema()
    run = _Run(settings, lint, target_version(options.pg_version, settings, live_version), sizes, schema, options)
    for raw in paths or (str(settings.migrations_path),):
        run.path(raw, stdin or sys.stdin)
    outcome = LintOutcome(run.report, options.fail_level or settings.lint.fail_level)
    if options.fix:
        # Only --fix writes files: a plain lint (a pre-commit hook's) does not import the writer and shutil.
        from pgshift.lint.fix import apply_fixes, fixable

        wanted = fixable(run.report)
        for part in run.fix_parts if wanted else ():
            for s in part:
                if (s.file, s.line, s.column) in wanted:
                    run.statements[(s.file, s.line, s.column)] = s.sql
        outcome.fix = apply_fixes(run.report, run.statements)
        fixed = {id(f) for f in outcome.fix.fixed}
        run.report.findings = [f for f in run.report.findings if id(f) not in fixed]
    return outcome


def lint_fix(settings: Settings, paths: tuple[str, ...] | list[str] = (), options: LintOptions | None = None, *,
             stdin: TextIO | None = None) -> LintOutcome:
    """:func:`lint_paths` writing the safe rewrites (``pgshift lint --fix``)."""
    return lint_paths(settings, paths, dataclasses.replace(options or LintOptions(), fix=True), stdin=stdin)
