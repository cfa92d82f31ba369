"""dbmate's format: ``<version>_<name>.sql`` with ``-- migrate:up`` and ``-- migrate:down``
sections, as dbmate 2 requires (up first, both present, only comments before up).

Options follow the marker: ``-- migrate:up transaction:false`` makes the migration
non-transactional. An empty down section is an explicit no-op (what dbmate runs on rollback).
The version is the leading digits of the file name, kept as written: dbmate stores that string
in ``schema_migrations``. Detected by the ``-- migrate:up`` marker, since the file names look
like pgshift's own.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

from pgshift.errors import MigrationSourceError
from pgshift.migrations.files import file_matches, in_order, named_sql_files, per_file, read_texts
from pgshift.migrations.model import Migration, SqlMigration, version_sort_key
from pgshift.migrations.splitter import SourceFile, Split, read_source, split_down, split_sql

FORMAT = "dbmate"
FILE_NAME = re.compile(r"^(?P<version>\d+)_?(?P<name>.*)\.sql$")
MARKER = re.compile(r"^--\s*migrate:(?P<direction>up|down)(?:\s+(?P<options>.*?))?\s*$")
UP_MARKER = re.compile(r"^--\s*migrate:up(\s|$)", re.M)
KNOWN_OPTIONS = {"transaction": ("true", "false")}


def claims(file: Path) -> bool:
    """Whether ``file``'s name is one of this format's migration files (no folder is read)."""
    return bool(FILE_NAME.match(file.name))


def detect(path: Path) -> bool:
    return any(file_matches(p, UP_MARKER) for p in path.glob("*.sql") if FILE_NAME.match(p.name))


def _options(text: str, where: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in text.split():
        key, sep, value = pair.partition(":")
        if not sep or key not in KNOWN_OPTIONS:
            raise MigrationSourceError(
                f"{where}: unknown dbmate option {pair!r}.", hint="dbmate knows transaction:false."
            )
        if value not in KNOWN_OPTIONS[key]:
            raise MigrationSourceError(f"{where}: {key} must be one of {', '.join(KNOWN_OPTIONS[key])}.")
        options[key] = value
    return options


def _markers(path: Path, source: SourceFile) -> dict[str, tuple[int, int, int, dict[str, str]]]:
    """{'up'/'down': (1-based line, offset of the line, offset after it, options)}; refuses missing,
    repeated or misplaced markers."""
    found: dict[str, tuple[int, int, int, dict[str, str]]] = {}
    for number, line_start, line_end, line in source.lines:
        match = MARKER.match(line.rstrip("\r\n"))
        if not match:
            continue
        direction = match.group("direction")
        if direction in found:
            raise MigrationSourceError(f"{path}:{number}: a second '-- migrate:{direction}' marker.")
        found[direction] = (number, line_start, line_end, _options(match.group("options") or "", f"{path}:{number}"))
    for direction in ("up", "down"):
        if direction not in found:
            raise MigrationSourceError(
                f"{path} has no '-- migrate:{direction}' marker; dbmate requires both sections.",
                hint="start the file with '-- migrate:up' and put the rollback after '-- migrate:down'.",
            )
    if found["down"][0] < found["up"][0]:
        raise MigrationSourceError(
            f"{path}:{found['down'][0]}: '-- migrate:down' comes before '-- migrate:up'."
        )
    for number, line in enumerate(source.slice(0, found["up"][1]).splitlines(keepends=True), start=1):
        if line.strip() and not line.lstrip().startswith("--"):
            raise MigrationSourceError(
                f"{path}:{number}: SQL before the '-- migrate:up' marker.",
                hint="dbmate runs nothing outside the up and down sections; move it below the marker.",
            )
    return found


def parse_file(path: Path, version: str, name: str, *, split: Split = split_sql) -> Migration:
    source = read_source(path, "migrate:", split)  # a large file is read in pieces, its text never held
    if source.blank:
        raise MigrationSourceError(f"The migration file {path} is empty.")
    checksum = source.checksum()
    markers = _markers(path, source)
    (up_line, _, up_offset, up_options), (down_line, down_line_start, down_offset, _) = markers["up"], markers["down"]
    # Sections are split in place (offsets into text), not copied out of it.
    up = source.part(up_line + 1, up_offset, down_line_start)
    if not up:
        raise MigrationSourceError(f"{path} has no statements in its '-- migrate:up' section.")
    down, down_error = split_down(
        lambda: source.part(down_line + 1, down_offset))
    return SqlMigration(
        version=version,
        name=name,
        path=path,
        up=up,
        down=down,
        down_error=down_error,
        checksum=checksum,
        source_format=FORMAT,
        transactional=up_options.get("transaction", "true") != "false",
        sort_key=version_sort_key(version),
    )


def load(path: Path, *, split: Split = split_sql) -> list[Migration]:
    files = named_sql_files(path, FILE_NAME, tool="dbmate",
                            example="<version>_<name>.sql, e.g. 20240101120000_create_users.sql")
    return in_order([
        per_file(partial(parse_file, file, version, name, split=split), version=version, name=name, path=file,
                 source_format=FORMAT, texts=partial(read_texts, file))
        for file, match in files
        for version, name in [(match.group("version"), match.group("name"))]
    ])
