"""Shared set-up for the ops tests: a migrations folder, settings, a catalog snapshot, writer threads."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from pgshift.config import Settings
from pgshift.units import Duration

CATALOG = """
SELECT 'column', c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' nn=' ||
       a.attnotnull || ' def=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' pos=' ||
       (SELECT count(*) FROM pg_attribute b WHERE b.attrelid = a.attrelid AND b.attnum > 0 AND NOT b.attisdropped
        AND b.attnum <= a.attnum)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'pgshift') AND a.attnum > 0
  AND NOT a.attisdropped AND c.relkind IN ('r', 'v', 'p')
UNION ALL SELECT 'constraint', conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) || ' ' ||
       convalidated FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL SELECT 'index', indexrelid::regclass || ' ' || pg_get_indexdef(indexrelid) || ' ' || indisvalid
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = 'public'::regnamespace
UNION ALL SELECT 'trigger', tgrelid::regclass || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal
UNION ALL SELECT 'relation', n.nspname || '.' || c.relname || ' ' || c.relkind::text FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'pgshift')
UNION ALL SELECT 'function', p.oid::regprocedure::text FROM pg_proc p WHERE pronamespace = 'public'::regnamespace
UNION ALL SELECT 'schema', nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'pgshift'
ORDER BY 1, 2
"""


def snapshot(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    return [(str(a), str(b)) for a, b in conn.execute(CATALOG).fetchall()]


def write_project(tmp_path: Path, files: dict[str, str]) -> Path:
    """``tmp_path`` with a migrations folder holding ``files`` (a project the CLI runs in)."""
    folder = tmp_path / "migrations"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return tmp_path


def make_project(tmp_path: Path, url: str, files: dict[str, str]) -> Settings:
    write_project(tmp_path, files)
    return Settings(database_url=url, base_dir=tmp_path, migrations_dir="migrations",
                    lock_timeout=Duration.parse("2s"))


class Writers:
    """Background writer threads; any exception is kept and fails the test."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []
        self.ops = 0
        self._lock = threading.Lock()

    def start(self, fn: Callable[[threading.Event], int]) -> threading.Thread:
        def run() -> None:
            try:
                done = fn(self.stop)
                with self._lock:
                    self.ops += done
            except Exception:  # the test reports it
                self.errors.append(traceback.format_exc())

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)
        return thread

    def join(self, threads: list[threading.Thread] | None = None) -> None:
        for t in threads or self.threads:
            t.join(timeout=60)
