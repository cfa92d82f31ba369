"""Each sample folder applies through the real CLI on a real server, with the format detected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgshift.cli.main import cli

SAMPLES = Path(__file__).parent / "samples"


@pytest.mark.parametrize(
    ("folder", "fmt", "count"),
    [
        (SAMPLES / "prisma", "prisma", 3),
        (SAMPLES / "flyway" / "sql", "flyway", 5),
        (SAMPLES / "dbmate" / "db" / "migrations", "dbmate", 3),
        (SAMPLES / "goose" / "migrations", "goose", 4),
        (SAMPLES / "golang_migrate" / "migrations", "golang-migrate", 3),
    ],
)
def test_sample_applies_on_a_real_server(
    folder: Path, fmt: str, count: int, db_url: str, conn: psycopg.Connection[Any]
) -> None:
    result = CliRunner().invoke(cli, ["migrate", "--dir", str(folder), "-d", db_url])
    assert result.exit_code == 0, result.output
    rows = conn.execute("SELECT source_format, status FROM pgshift.migrations").fetchall()
    assert rows == [(fmt, "applied")] * count
    # The dollar-quoted function body survived splitting, and the trigger uses it.
    trigger = conn.execute("SELECT tgname FROM pg_trigger WHERE tgname = 'users_touch'").fetchone()
    assert trigger == ("users_touch",)
    conn.execute("INSERT INTO users (email) VALUES ('a@example.com')")
    conn.execute("UPDATE users SET email = 'b@example.com'")
