"""Prisma Migrate's format: ``prisma/migrations/<timestamp>_<name>/migration.sql`` plus
``migration_lock.toml``.

``load`` accepts the ``prisma/migrations`` folder itself or a project root containing it.
Version is the folder name's timestamp, name the rest; Prisma's own history
(``_prisma_migrations.migration_name``) uses the whole folder name, which is
``migration.path.parent.name`` (equal to ``f"{version}_{name}"``). Prisma has no down
migrations (``down`` is None). A migration holding only comments is valid in Prisma
(``migrate dev --create-only`` writes one) and loads with no statements; a file with nothing in
it at all is refused. An outer ``BEGIN; ... COMMIT;`` is dropped as for golang-migrate.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

from pgshift.errors import MigrationSourceError
from pgshift.migrations.files import per_file, read_text, read_texts, require_dir, require_unique_versions
from pgshift.migrations.formats.golang_migrate import strip_outer_transaction
from pgshift.migrations.model import Migration, SqlMigration, version_sort_key
from pgshift.migrations.splitter import Split, read_source, split_sql

FORMAT = "prisma"
LOCK_FILE = "migration_lock.toml"
FOLDER_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>.+)$")
_PROVIDER = re.compile(r"""^\s*provider\s*=\s*["'](?P<provider>[^"']*)["']""", re.M)


def migrations_dir(path: Path) -> Path:
    """``path`` itself, or ``path/prisma/migrations`` when given a project root."""
    nested = path / "prisma" / "migrations"
    if not (path / LOCK_FILE).exists() and nested.is_dir():
        return nested
    return path


def claims(file: Path) -> bool:
    """Whether ``file``'s name is one of this format's migration files (no folder is read)."""
    return file.name == "migration.sql"


def detect(path: Path) -> bool:
    folder = migrations_dir(path)
    if (folder / LOCK_FILE).is_file():
        return True
    return any((child / "migration.sql").is_file() for child in folder.iterdir() if child.is_dir())


def _check_provider(folder: Path) -> None:
    lock = folder / LOCK_FILE
    if not lock.is_file():
        return
    match = _PROVIDER.search(read_text(lock))
    if match and match.group("provider") not in ("postgresql", "postgres"):
        raise MigrationSourceError(
            f"{lock} says these migrations are for {match.group('provider')!r}, not PostgreSQL."
        )


def _load_one(folder: Path, split: Split = split_sql) -> Migration:
    match = FOLDER_NAME.match(folder.name)
    if not match:
        raise MigrationSourceError(
            f"{folder} is not named like a Prisma migration (<timestamp>_<name>, e.g. "
            "20240101120000_init).",
            hint="move folders that are not migrations out of prisma/migrations.",
        )
    file = folder / "migration.sql"
    if not file.is_file():
        raise MigrationSourceError(f"The Prisma migration folder {folder} has no migration.sql.")
    source = read_source(file, None, split)  # a large file is read in pieces, its text never held
    if source.blank:
        raise MigrationSourceError(f"The migration file {file} is empty.")
    version = match.group("version")
    return SqlMigration(
        version=version,
        name=match.group("name"),
        path=file,
        up=strip_outer_transaction(source.part(1)),
        down=None,
        checksum=source.checksum(),
        source_format=FORMAT,
        sort_key=version_sort_key(version),
    )


def _tolerant(folder: Path, split: Split) -> Migration:
    """The migration, or one carrying why its file cannot be used (see ``per_file``); a folder
    not named like a migration stays an error for the whole folder (it has no version)."""
    match = FOLDER_NAME.match(folder.name)
    if not match:
        return _load_one(folder, split)
    file = folder / "migration.sql"
    return per_file(partial(_load_one, folder, split), version=match.group("version"), name=match.group("name"),
                    path=file, source_format=FORMAT, texts=partial(read_texts, file))


def load(path: Path, *, split: Split = split_sql) -> list[Migration]:
    folder = migrations_dir(require_dir(path))
    _check_provider(folder)
    children = [c for c in sorted(folder.iterdir()) if c.is_dir() and not c.name.startswith(".")]
    migrations = [_tolerant(child, split) for child in children]
    require_unique_versions(migrations)
    return sorted(migrations, key=lambda m: m.sort_key)
