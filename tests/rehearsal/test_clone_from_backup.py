"""A busy source is cloned from its newest verified backup when that backup has today's schema."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgshift.db.history import History
from pgshift.rehearsal.clone import maintenance_connection
from pgshift.rehearsal.run import RehearsalOptions, rehearse
from pgshift.safety.backup import take_backup
from tests.rehearsal.test_rehearse import REVERSIBLE

Conn = psycopg.Connection[tuple[object, ...]]


def test_busy_source_is_cloned_from_a_current_verified_backup(
    source: Conn, db_url: str, settings_for: Any, tmp_path: Path
) -> None:
    settings = settings_for(REVERSIBLE)
    settings = dataclasses.replace(settings, backup=dataclasses.replace(settings.backup, directory=str(tmp_path / "b")))
    result = take_backup(settings, db_url)
    with psycopg.connect(db_url):  # the app is connected: no template copy is possible
        report = rehearse(settings, RehearsalOptions())
    assert report.clone is not None
    assert report.clone.method == "backup"
    assert str(result.backup.path) in report.clone.note
    assert report.passed, report.reasons


def test_busy_source_is_cloned_from_a_backup_written_elsewhere_and_recorded_in_the_ledger(
    source: Conn, db_url: str, settings_for: Any, tmp_path: Path
) -> None:
    settings = settings_for(REVERSIBLE)
    with psycopg.connect(db_url, autocommit=True) as setup:
        History(setup, settings.history_schema).ensure()  # a ledger records where each backup went
    result = take_backup(settings, db_url, directory=tmp_path / "elsewhere")  # pgshift backup --to
    assert not (settings.resolve(settings.backup.directory)).exists()
    with psycopg.connect(db_url):  # the app is connected: no template copy is possible
        report = rehearse(settings, RehearsalOptions())
    assert report.clone is not None and report.clone.method == "backup", report.clone
    assert str(result.backup.path) in report.clone.note


def test_backup_with_an_older_schema_is_not_used(source: Conn, db_url: str, settings_for: Any, tmp_path: Path) -> None:
    settings = settings_for(REVERSIBLE)
    settings = dataclasses.replace(settings, backup=dataclasses.replace(settings.backup, directory=str(tmp_path / "b")))
    take_backup(settings, db_url)
    with psycopg.connect(db_url, autocommit=True) as app:
        # The schema moves on after the backup (a migration applied by pgshift records a new head).
        app.execute("CREATE SCHEMA IF NOT EXISTS pgshift")
        from pgshift.db.history import History

        history = History(app, "pgshift")
        history.ensure()
        history.record(version="0", name="later", kind="versioned", checksum="x", status="applied",
                       source_format="native")
        report = rehearse(settings, RehearsalOptions())
    assert report.clone is not None and report.clone.method == "pg_dump"


def test_expanded_operations_are_reversed_by_abort(source: Conn, settings_for: Any) -> None:
    ops = ("operations:\n"
           "  - add_column:\n      table: items\n"
           "      column: {name: note, type: text, default: \"'n/a'\", nullable: false}\n"
           "      up: \"'filled'\"\n")
    settings = settings_for({"1_sql.sql": REVERSIBLE["1_add_sku.sql"], "2_note.ops.yaml": ops})
    report = rehearse(settings, RehearsalOptions())
    assert report.schema.reversibility == "restored", report.schema.down_diff
    assert report.passed, report.reasons
    assert not report.warnings


def test_the_maintenance_connection_has_no_statement_timeout_whatever_the_role_has(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """CREATE DATABASE ... TEMPLATE of a large database outlasts a statement_timeout a role keeps for the
    application (here given as the session's startup option, as a role's default would be)."""
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=7ms")
    with psycopg.connect(db_url) as plain:
        assert plain.execute("SHOW statement_timeout").fetchone() == ("7ms",)
    with maintenance_connection(db_url) as admin:
        assert admin.execute("SHOW statement_timeout").fetchone() == ("0",)
