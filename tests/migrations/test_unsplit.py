"""Loading without statements (for `adopt`, which runs no SQL) parses nothing: the reader is handed
splitter.unsplit explicitly, so SQL that does not parse cannot stop it, and loading with statements
afterwards (in the same process) parses again."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgshift.migrations.loader import load_migrations

BROKEN = "CREATE TABLE t (id int);\nSELEC broken;\n"
LAYOUTS = {
    "native": {"1_init.sql": f"-- pgshift:up\n{BROKEN}"},
    "dbmate": {"20240101000000_init.sql": f"-- migrate:up\n{BROKEN}-- migrate:down\nDROP TABLE t;\n"},
    "flyway": {"V1__init.sql": BROKEN},
    "golang-migrate": {"1_init.up.sql": BROKEN, "1_init.down.sql": "DROP TABLE t;\n"},
    "goose": {"00001_init.sql": f"-- +goose Up\n{BROKEN}"},
}


@pytest.mark.parametrize("fmt", sorted(LAYOUTS))
def test_a_folder_loads_unsplit_without_parsing(fmt: str, tmp_path: Path) -> None:
    for name, text in LAYOUTS[fmt].items():
        (tmp_path / name).write_text(text)
    _, [unsplit] = load_migrations(tmp_path, fmt, statements=False)
    assert unsplit.error is None
    assert [(s.sql, s.line) for s in unsplit.up] == [(BROKEN.strip(), 2 if fmt in ("native", "dbmate", "goose")
                                                      else 1)]
    _, [split] = load_migrations(tmp_path, fmt)
    assert split.error is not None and "SELEC" in str(split.error.message)
