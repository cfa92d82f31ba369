"""The built-in checks of a migrations folder, as pytest items.

- ``applies-from-empty``: the whole history applies to an empty database;
- ``reversible[<version>]``: each migration's down part gives back the exact catalog it started
  from, and applying it again gives the same schema as the first time (the rehearsal's catalog
  snapshot); an operations migration is expanded, aborted (the catalog must come back), expanded
  again and contracted: nothing of the transition may remain, and the catalog must be the shape its
  operations declare (pgshift.rehearsal.shape). A migration without a down part
  is reported as not applicable, not as a failure;
- ``lint``: no finding at or above ``lint.fail_level``;
- ``unique-versions``: no two files with one version;
- ``ledger-matches-files``: with a ledger DSN, the ledger's checksums match the files.

The round trip runs once, on one database, the first time one of its items runs; each item then
reports its own migration's result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgshift import api
from pgshift.config import Settings
from pgshift.errors import PgshiftError
from pgshift.testing.server import TestServer, settings_for


class CheckFailed(Exception):
    """A built-in check's failure: its text is the whole report (no traceback of pgshift's own code)."""


@dataclass
class Outcome:
    applicable: bool = True
    problems: list[str] = field(default_factory=list)
    why_not: str = ""


class Suite:
    """The folder under test, the server, and the round trip's results (computed once)."""

    def __init__(self, settings: Settings, *, ledger_dsn: str | None = None) -> None:
        self.settings = settings
        self.ledger_dsn = ledger_dsn
        self._server: TestServer | None = None
        self._round_trip: dict[str, Outcome] | None = None
        self._round_trip_error: str | None = None

    @property
    def server(self) -> TestServer:
        if self._server is None:
            self._server = TestServer.start()
        return self._server

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()

    def migrations(self) -> list[Any]:
        _fmt, migrations = api.load(self.settings)
        return [m for m in migrations if m.kind == "versioned"]

    # -- the checks ------------------------------------------------------------------------
    def applies_from_empty(self) -> None:
        with self.fresh_settings() as settings:
            try:
                api.migrate(settings)
            except PgshiftError as exc:
                raise CheckFailed(f"The history does not apply to an empty database: {exc}") from exc

    def reversible(self, version: str) -> Outcome:
        if self._round_trip is None:
            self._round_trip = self._run_round_trip()
        if self._round_trip_error is not None and version not in self._round_trip:
            raise CheckFailed(f"Not reached: the round trip stopped earlier. {self._round_trip_error}")
        return self._round_trip[version]

    def lint(self) -> None:
        """What `pgshift lint --no-down` says of the folder, judged by lint's own policy (lint_verdict):
        parse errors, and findings at or above lint.fail_level."""
        verdict = api.lint(self.settings, options=api.LintOptions(down=False)).verdict
        lines = [f"{p.file}:{p.line}:{p.column}: parse error: {p.message}" for p in verdict.parse_errors]
        lines += [f"{f.file}:{f.line}:{f.column}: {f.severity} {f.rule} {f.name}: {f.message}"
                  for f in verdict.blocking]
        if lines:
            raise CheckFailed(f"pgshift lint: {len(lines)} problem(s) at or above fail_level "
                              f"'{verdict.fail_level}':\n" + "\n".join(lines))

    def loads(self) -> None:
        self.migrations()  # raises the reader's own error, naming the file

    def unique_versions(self) -> None:
        seen: dict[str, Path] = {}
        clashes = []
        for migration in self.migrations():
            if migration.version in seen:
                clashes.append(f"version {migration.version}: {seen[migration.version]} and {migration.path}")
            seen.setdefault(migration.version, migration.path)
        if clashes:
            raise CheckFailed("Two files share a version: " + "; ".join(clashes))

    def ledger_matches(self) -> None:
        assert self.ledger_dsn is not None
        report = api.validate(dataclasses.replace(self.settings, database_url=self.ledger_dsn, migrate_url=None))
        if report.problems:
            raise CheckFailed("The ledger does not match the files: " + "; ".join(
                f"{p.version} {p.name}: {p.kind} ({p.detail})" for p in report.problems))

    # -- helpers ---------------------------------------------------------------------------
    def fresh_settings(self) -> _FreshDatabase:
        return _FreshDatabase(self)

    def _run_round_trip(self) -> dict[str, Outcome]:
        from pgshift.rehearsal.catalog import diff, snapshot

        results: dict[str, Outcome] = {}
        with self.fresh_settings() as settings:
            def catalog() -> Any:
                with psycopg.connect(settings.database_url or "") as conn:
                    return snapshot(conn, history_schema=settings.history_schema)

            def compare(what: str, expected: Any, got: Any) -> list[str]:
                changes = diff(expected, got)
                if not changes:
                    return []
                return [f"{what}; the catalog differs ({len(changes)} change(s)):\n"
                        + "\n".join("  " + c.line() for c in changes[:40])]

            for migration in self.migrations():
                outcome = Outcome()
                results[migration.version] = outcome
                try:
                    before = catalog()
                    if isinstance(migration, api.OpsMigration):
                        self._ops_round_trip(settings, migration, before, catalog, compare, outcome)
                        continue
                    api.migrate(settings, to=migration.version)
                    after = catalog()
                    if migration.down is None:
                        outcome.applicable = False
                        outcome.why_not = (f"{migration.label} has no down part"
                                           + (f" ({migration.down_error})" if migration.down_error else "")
                                           + ": reversibility does not apply.")
                        continue
                    api.rollback(settings, steps=1)
                    outcome.problems += compare("After its down part the catalog is not what it was before "
                                                f"{migration.label}", before, catalog())
                    api.migrate(settings, to=migration.version)
                    outcome.problems += compare(f"Applied again after its down part, {migration.label} gives a "
                                                "different schema than the first time", after, catalog())
                except PgshiftError as exc:
                    outcome.problems.append(f"{migration.label}: {exc}")
                    self._round_trip_error = f"{migration.label} failed: {exc}"
                    break
        return results

    def _ops_round_trip(self, settings: Settings, migration: Any, before: Any, catalog: Any, compare: Any,
                        outcome: Outcome) -> None:
        from pgshift.rehearsal.shape import declared_shape

        with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
            declared = declared_shape(conn, migration.ops, history_schema=settings.history_schema)
        if declared.error:
            outcome.problems.append(f"The shape {migration.label} declares could not be taken on the database before "
                                    f"its expand: {declared.error}")
        api.migrate(settings, to=migration.version)
        api.abort(settings, version=migration.version)
        outcome.problems += compare(f"After expand and abort of {migration.label} the catalog is not what it "
                                    "was before", before, catalog())
        api.migrate(settings, to=migration.version)
        result = api.contract(settings, version=migration.version)
        left = []
        for category, objects in catalog().items():
            for name in objects:
                if (result.version_schema and name.startswith(f"{result.version_schema}.")) or "_pgshift_sync" in name:
                    left.append(f"{category} {name}")
        if left:
            outcome.problems.append(f"After contract of {migration.label}, objects of the transition remain: "
                                    + ", ".join(left))
        if declared.snapshot is not None:
            outcome.problems += compare(f"After expand and contract, {migration.label} does not reach the shape its "
                                        "operations declare (- declared but missing, + there but not declared)",
                                        declared.snapshot, catalog())


class _FreshDatabase:
    """``with suite.fresh_settings() as settings``: an empty database of its own, dropped afterwards."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.name = ""

    def __enter__(self) -> Settings:
        server = self.suite.server
        self.name = server.create_database()
        return settings_for(self.suite.settings, server.url_for(self.name))

    def __exit__(self, *_exc: object) -> None:
        self.suite.server.drop_database(self.name)


class BuiltinCheck(pytest.Item):
    """One built-in check; ``run`` raises CheckFailed, or returns an Outcome for a reversibility check."""

    def __init__(self, *, suite: Suite, check: str, version: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suite = suite
        self.check = check
        self.version = version

    def runtest(self) -> None:
        if self.check == "reversible":
            assert self.version is not None
            outcome = self.suite.reversible(self.version)
            if not outcome.applicable:
                # Reported at the migration's file (reportinfo), not at this line.
                raise pytest.skip.Exception(f"not applicable: {outcome.why_not}", _use_item_location=True)
            if outcome.problems:
                raise CheckFailed("\n".join(outcome.problems))
            return
        getattr(self.suite, self.check.replace("-", "_"))()

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CheckFailed | PgshiftError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"pgshift {self.name}"  # line 0: pytest shows the file's first line


def collect(session: pytest.Session, suite: Suite) -> Iterator[pytest.Item]:
    def item(name: str, check: str, version: str | None = None, path: Path | None = None) -> pytest.Item:
        return BuiltinCheck.from_parent(session, name=name, nodeid=f"pgshift::{name}", suite=suite, check=check,
                                        version=version, path=path or suite.settings.migrations_path)

    try:
        migrations = suite.migrations()
    except PgshiftError:
        yield item("loads", "loads")  # fails with the reader's message; nothing else can run
        return
    yield item("unique-versions", "unique_versions")
    yield item("lint", "lint")
    yield item("applies-from-empty", "applies_from_empty")
    for migration in migrations:
        yield item(f"reversible[{migration.version}]", "reversible", migration.version, migration.path)
    if suite.ledger_dsn:
        yield item("ledger-matches-files", "ledger_matches")


class _BrokenSettings(pytest.Item):
    def __init__(self, *, error: PgshiftError, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def runtest(self) -> None:
        raise self.error

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        hint = f" Hint: {self.error.hint}" if self.error.hint else ""
        return f"pgshift's settings could not be read: {self.error}{hint}"

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, "pgshift settings"


def broken_settings(session: pytest.Session, error: PgshiftError) -> pytest.Item:
    return _BrokenSettings.from_parent(session, name="settings", nodeid="pgshift::settings", error=error)
