"""Helpers for rehearsal tests: a source database with rows, and migration folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgshift.config import Settings
from pgshift.rehearsal import catalog

SCHEMA = """
CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL, qty int NOT NULL DEFAULT 0);
INSERT INTO items (name, qty) SELECT 'item ' || g, g % 7 FROM generate_series(1, 600) g;
-- IMMUTABLE and slow (1 ms a call): an index on slow_key(id) takes as long as the table has rows,
-- so a blocking CREATE INDEX blocks writers for a predictable time on any machine.
CREATE FUNCTION slow_key(i bigint) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS
$$ BEGIN PERFORM pg_sleep(0.001); RETURN i; END $$;
"""


def write_migrations(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def state(url: str) -> tuple[str, dict[str, int], list[tuple[object, ...]]]:
    """Schema fingerprint, row counts and the ledger of a database: all must stay as they were."""
    with psycopg.connect(url, autocommit=True) as conn:
        snap = catalog.snapshot(conn)
        ledger = conn.execute(
            "SELECT to_regclass('pgshift.migrations') IS NOT NULL").fetchall()
        return catalog.fingerprint(snap), catalog.row_counts(conn), ledger


def clones_of(conn: psycopg.Connection[tuple[object, ...]], source: str) -> list[str]:
    rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                        (f"pgshift_rehearsal_{source[:30]}_%",)).fetchall()
    return [str(r[0]) for r in rows]


@pytest.fixture
def source(db_url: str, pg_server: Any) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """Fills the test's database, then leaves it without sessions (so a template copy works);
    yields a connection to the maintenance database for looking at clones."""
    with psycopg.connect(db_url, autocommit=True) as setup:
        setup.execute(SCHEMA)
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        yield admin


@pytest.fixture
def settings_for(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(files: dict[str, str]) -> Settings:
        folder = write_migrations(tmp_path / "migrations", files)
        return Settings(database_url=db_url, migrations_dir=str(folder), base_dir=tmp_path)

    return make
