"""pgshift's own migration file format."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgshift.errors import MigrationSourceError
from pgshift.migrations.formats.native import load


def test_directives_and_parts(tmp_path: Path) -> None:
    (tmp_path / "20240101000000_idx.sql").write_text(
        "-- explain\n-- pgshift:no-transaction\n-- pgshift:lock-timeout 5s\n-- pgshift:statement-timeout 1min\n"
        "-- pgshift:up\nCREATE INDEX CONCURRENTLY i ON t (a);\n-- pgshift:down\nDROP INDEX CONCURRENTLY i;\n"
    )
    (tmp_path / "20240102000000_plain.sql").write_text("CREATE TABLE t2 (id int);\n")
    first, second = load(tmp_path)
    assert (first.version, first.name, first.transactional) == ("20240101000000", "idx", False)
    assert first.lock_timeout is not None and first.statement_timeout is not None
    assert (first.lock_timeout.ms, first.statement_timeout.ms) == (5_000, 60_000)
    assert first.up[0].line == 6 and first.down is not None and first.down[0].line == 8
    assert second.down is None and not second.reversible and second.up[0].line == 1


def test_empty_down_part_is_an_explicit_no_op(tmp_path: Path) -> None:
    (tmp_path / "1_x.sql").write_text("-- pgshift:up\nSELECT 1;\n-- pgshift:down\n-- nothing to undo\n")
    [m] = load(tmp_path)
    assert m.down == [] and m.reversible


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-- pgshift:lock-timeout soon\nSELECT 1;", "lock-timeout"),
        ("-- pgshift:down\nSELECT 1;\n-- pgshift:up\nSELECT 2;", "before the up marker"),
        ("-- pgshift:up\n-- pgshift:down\nSELECT 1;", "no statements in its up part"),
        ("-- pgshift:up\nSELECT 1;\n-- pgshift:down\n-- pgshift:down\n", "a second"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "1_x.sql").write_text(text)
    [migration] = load(tmp_path)  # a broken file is an error at its own migration, not for the folder
    with pytest.raises(MigrationSourceError, match=message) as caught:
        if migration.error is not None:
            raise migration.error
    assert "1_x.sql" in str(caught.value) and migration.up == [] and migration.down is None


def test_checksum_changes_with_either_part(tmp_path: Path) -> None:
    path = tmp_path / "1_x.sql"
    path.write_text("-- pgshift:up\nSELECT 1;\n-- pgshift:down\nSELECT 2;\n")
    before = load(tmp_path)[0].checksum
    path.write_text("-- pgshift:up\nSELECT 1;\n-- pgshift:down\nSELECT 3;\n")
    assert load(tmp_path)[0].checksum != before


def test_timeout_directives_are_kept_in_units_the_server_knows(tmp_path: Path) -> None:
    """A directive is written like a setting ("10m"); it reaches the server as SET lock_timeout, which
    knows only "min"."""
    (tmp_path / "1_x.sql").write_text("-- pgshift:lock-timeout 10m\n-- pgshift:statement-timeout 1.5s\nSELECT 1;\n")
    [m] = load(tmp_path)
    assert m.lock_timeout is not None and m.statement_timeout is not None
    assert (m.lock_timeout.postgres, m.statement_timeout.postgres) == ("10min", "1500ms")
