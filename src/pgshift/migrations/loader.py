"""Pick the reader for a migrations folder, by name or by looking at it."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from pgshift.errors import MigrationSourceError
from pgshift.migrations.files import require_dir
from pgshift.migrations.model import Migration
from pgshift.migrations.splitter import split_sql, unsplit

# Detection order matters: the most specific layouts first, the native format last.
READERS = {
    "prisma": "pgshift.migrations.formats.prisma",
    "flyway": "pgshift.migrations.formats.flyway",
    "golang-migrate": "pgshift.migrations.formats.golang_migrate",
    "goose": "pgshift.migrations.formats.goose",
    "dbmate": "pgshift.migrations.formats.dbmate",
    "native": "pgshift.migrations.formats.native",
}


def reader(fmt: str) -> ModuleType:
    try:
        return importlib.import_module(READERS[fmt])
    except KeyError:
        raise MigrationSourceError(
            f"Unknown migration format {fmt!r}; choose one of {', '.join(READERS)} or auto."
        ) from None


def available_readers() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for name, module in READERS.items():
        try:
            found[name] = importlib.import_module(module)
        except ModuleNotFoundError:
            continue
    return found


def detect_format(path: Path) -> str:
    require_dir(path)
    for name, module in available_readers().items():
        if module.detect(path):
            return name
    if not any(path.iterdir()):
        return "native"
    raise MigrationSourceError(
        f"Cannot tell which tool's migrations are in {path}.",
        hint=f"name it with --format ({', '.join(READERS)}) or format in pgshift.toml.",
    )


def load_migrations(path: Path, fmt: str = "auto", *, statements: bool = True) -> tuple[str, list[Migration]]:
    """(format, migrations sorted by version) for the folder ``path``. Without ``statements`` the
    SQL is not parsed: each part is one unsplit statement (for commands that run nothing)."""
    chosen = detect_format(path) if fmt == "auto" else fmt
    return chosen, reader(chosen).load(path, split=split_sql if statements else unsplit)
