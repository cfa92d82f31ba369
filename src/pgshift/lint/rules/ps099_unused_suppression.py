"""PS099 unused-suppression: reported by the engine, not by a statement check."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule


def check(ctx: Ctx) -> Iterator[Hit]:
    return iter(())


RULE = Rule(
    id="PS099", name="unused-suppression",
    summary="A -- pgshift:ignore directive that matches no finding, or has no reason.",
    lock="", blocks=(), rewrites=False, scans=False, versions="",
    bad="-- pgshift:ignore PS001 -- the table is tiny\nSELECT 1;",
    good="-- pgshift:ignore PS001 -- the table is tiny\nCREATE INDEX i ON t (a);",
    safe="Remove stale suppressions; always give a reason after a second '--'.",
    severity="warning", kinds=(), check=check, applies_to_new_tables=True, category="meta",
)
