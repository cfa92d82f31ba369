"""golang-migrate's format: ``<N>_<name>.up.sql`` and an optional ``<N>_<name>.down.sql``.

golang-migrate sends each file to PostgreSQL as one multi-statement query (an implicit
transaction), so users often wrap files in ``BEGIN; ... COMMIT;`` themselves. pgshift runs a
migration in its own transaction, so an outer ``BEGIN``/``COMMIT`` pair is dropped here; a file
with other BEGIN / COMMIT / END statements runs in the transactions they divide it into, as
golang-migrate ran it (pgshift.migrations.blocks). Versions are numbers (``000001`` is version
``1``, as golang-migrate records it in ``schema_migrations``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from pgshift.errors import MigrationSourceError
from pgshift.migrations.classify import transaction_control
from pgshift.migrations.files import per_file, read_texts, require_dir, require_unique_versions
from pgshift.migrations.model import Migration, SqlMigration, Statement, version_sort_key
from pgshift.migrations.splitter import Split, StreamedStatements, read_source, split_down, split_file_part, split_sql

FORMAT = "golang-migrate"
FILE_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>.*)\.(?P<direction>up|down)\.sql$")


def claims(file: Path) -> bool:
    """Whether ``file``'s name is one of this format's migration files (no folder is read)."""
    return bool(FILE_NAME.match(file.name))


def detect(path: Path) -> bool:
    return any(FILE_NAME.match(p.name) for p in path.glob("*.sql"))


def strip_outer_transaction(statements: Sequence[Statement]) -> Sequence[Statement]:
    """Drop a ``BEGIN; ... COMMIT;`` pair wrapping the whole part (one transaction, as pgshift runs
    it anyway). Other BEGIN / COMMIT / END statements stay: they divide the part into the
    transactions golang-migrate ran (pgshift.migrations.blocks)."""
    if len(statements) < 2:  # also the unsplit placeholder of `adopt` (splitter.unsplit)
        return statements
    kinds = [transaction_control(s.sql) for s in statements]  # parses only what may be BEGIN / COMMIT ...
    if (
        kinds[0] == "begin"
        and kinds[-1] == "commit"
        and not any(kind is not None for kind in kinds[1:-1])
    ):
        statements = statements[1:-1]
    if isinstance(statements, StreamedStatements):
        return statements.renumbered()
    return [
        Statement(s.sql, s.file, s.line, s.column, index) for index, s in enumerate(statements)
    ]


def parse_statements(path: Path, text: str, split: Split = split_sql) -> Sequence[Statement]:
    return strip_outer_transaction(split_file_part(split, text, file=str(path)))


def _load_pair(up_path: Path, down_path: Path | None, version: str, name: str, split: Split) -> Migration:
    up_source = read_source(up_path, None, split)  # a large file is read in pieces, its text never held
    if up_source.blank:
        raise MigrationSourceError(f"The migration file {up_path} is empty.")
    up = strip_outer_transaction(up_source.part(1))
    if not up:
        raise MigrationSourceError(f"{up_path} has no SQL statements (only comments).")
    digest = up_source.digest.copy()  # checksum_of(up text, down text)
    digest.update(b"\x00")
    down, down_error = None, None
    if down_path is not None:
        down_source = read_source(down_path, None, split)
        down_source.hash_into(digest)
        digest.update(b"\x00")
        down, down_error = split_down(lambda: strip_outer_transaction(down_source.part(1)))
    return SqlMigration(
        version=version,
        name=name,
        path=up_path,
        up=up,
        down=down,
        down_error=down_error,
        checksum=digest.hexdigest(),
        source_format=FORMAT,
        sort_key=version_sort_key(version),
    )


def load(path: Path, *, split: Split = split_sql) -> list[Migration]:
    require_dir(path)
    files: dict[str, dict[str, Path]] = {"up": {}, "down": {}}
    names: dict[str, str] = {}
    for file in sorted(path.glob("*.sql")):
        match = FILE_NAME.match(file.name)
        if not match:
            raise MigrationSourceError(
                f"{file} is not named like a golang-migrate migration "
                "(<version>_<name>.up.sql or .down.sql, e.g. 000001_create_users.up.sql).",
                hint="rename it, or move files that are not migrations out of the folder.",
            )
        version = str(int(match.group("version")))
        same = files[match.group("direction")]
        if version in same:
            raise MigrationSourceError(
                f"Two migrations have version {version}: {same[version]} and {file}.",
                hint="golang-migrate allows one up and one down file per version; renumber one.",
            )
        same[version] = file
        if match.group("direction") == "up":
            names[version] = match.group("name")
    for version, down_file in files["down"].items():
        if version not in files["up"]:
            raise MigrationSourceError(f"{down_file} has no matching up file (version {version}).")
    migrations = [
        per_file(partial(_load_pair, up_file, down_file, version, names[version], split), version=version,
                 name=names[version], path=up_file, source_format=FORMAT, texts=partial(read_texts, up_file, down_file))
        for version, up_file in files["up"].items()
        for down_file in [files["down"].get(version)]
    ]
    require_unique_versions(migrations)
    return sorted(migrations, key=lambda m: m.sort_key)
