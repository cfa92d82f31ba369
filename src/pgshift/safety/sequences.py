"""The archive's sequence values against a restored copy's.

pg_dump writes each sequence's position as a ``SEQUENCE SET`` entry of the data section
(``SELECT pg_catalog.setval('public.orders_id_seq', 500, true);``). A restore that leaves a sequence
behind its table's keys fails at the application's next insert (a duplicate key), which no row count
or content hash notices. The values are read from the archive itself (pg_restore prints only those
entries, by its table of contents, without reading the table data) and compared with the copy's.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from pgshift.safety.tools import Tool, run_tool

_SETVAL = re.compile(r"^SELECT pg_catalog\.setval\('((?:[^']|'')*)', (-?\d+), (true|false)\);$", re.M)


def archived_sequences(archive: Path, tool: Tool) -> dict[str, int | None]:
    """Each sequence the archive sets (qualified and quoted as pg_dump prints it) and the value its next
    ``nextval`` follows: None for one never used (``is_called`` false, the next value is its start)."""
    listing = run_tool([str(tool.path), "--list", str(archive)], {}, what="listing the archive's sequence values")
    entries = [line for line in listing.splitlines() if not line.startswith(";") and " SEQUENCE SET " in line]
    if not entries:
        return {}
    with tempfile.NamedTemporaryFile("w", suffix=".list", encoding="utf-8") as chosen:
        chosen.write("\n".join(entries) + "\n")
        chosen.flush()
        script = run_tool([str(tool.path), f"--use-list={chosen.name}", "--file=-", str(archive)], {},
                          what="reading the archive's sequence values")
    return {name.replace("''", "'"): int(value) if called == "true" else None
            for name, value, called in _SETVAL.findall(script)}


def compare_sequences(conn: psycopg.Connection[Any], archived: dict[str, int | None]) -> list[str]:
    """The restored sequences (``conn``: the copy) against ``archived``; the differences."""
    problems: list[str] = []
    for name, expected in archived.items():
        try:
            with conn.transaction():
                row = conn.execute("SELECT pg_catalog.pg_sequence_last_value(%s::regclass)", (name,)).fetchone()
        except psycopg.errors.UndefinedTable:
            problems.append(f"sequence {name} is missing")
            continue
        got = None if row is None else row[0]
        if got != expected:
            problems.append(f"sequence {name} is at {_position(got)} after the restore, the archive sets it to "
                            f"{_position(expected)}")
    return problems


def _position(value: int | None) -> str:
    return "its start (never used)" if value is None else str(value)
