"""``pgshift lint``: a migration safety analyzer (rules, schema model, lock analysis)."""

from __future__ import annotations

from pgshift.lint.engine import lint_migrations, lint_sql
from pgshift.lint.model import Finding, LintReport, TableSize

__all__ = ["Finding", "LintReport", "TableSize", "lint_migrations", "lint_sql"]
