"""Lint a SQL snippet the way the CLI lints a migrations folder (real native loader)."""

from __future__ import annotations

from pathlib import Path

from pgshift.config import LintSettings
from pgshift.lint.engine import lint_migrations, lint_sql
from pgshift.lint.model import LintReport, TableSize
from pgshift.migrations.loader import load_migrations


def lint_snippet(
    sql: str,
    tmp_path: Path,
    *,
    setup: str = "",
    pg_version: int | None = None,
    mode: str = "migration",
    sizes: dict[str, TableSize] | None = None,
    settings: LintSettings | None = None,
) -> LintReport:
    """``mode='migration'``: a native migration (transactional unless it says otherwise), with
    ``setup`` as an earlier, applied migration. ``mode='file'``: a plain SQL file."""
    if mode == "file":
        from pgshift.lint.schema import Schema

        schema = Schema()
        schema.load_sql(setup)
        path = tmp_path / "snippet.sql"
        path.write_text(sql)
        return lint_sql(sql, file=str(path), pg_version=pg_version, sizes=sizes, schema=schema,
                        settings=settings)
    folder = tmp_path / "migrations"
    folder.mkdir(exist_ok=True)
    if setup:
        (folder / "1_setup.sql").write_text(setup)
    (folder / "2_change.sql").write_text(sql)
    _, migrations = load_migrations(folder, "native")
    history = [m for m in migrations if m.version == "1"]
    target = [m for m in migrations if m.version == "2"]
    return lint_migrations(target, history=history, pg_version=pg_version, sizes=sizes, settings=settings)


def fired(report: LintReport, rule_id: str) -> list[str]:
    return [f.severity for f in report.active if f.rule == rule_id]
