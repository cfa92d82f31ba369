"""Rehearsal: prove pending migrations on a clone of the database, under traffic, before
production (``pgshift rehearse``). Library entry point: :func:`rehearse`."""

from __future__ import annotations

from pgshift.rehearsal.html import render_html
from pgshift.rehearsal.report import to_json
from pgshift.rehearsal.run import RehearsalOptions, RehearsalReport, rehearse, require_pass

__all__ = ["RehearsalOptions", "RehearsalReport", "rehearse", "render_html", "require_pass", "to_json"]
