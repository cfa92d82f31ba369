"""goose's SQL format: ``<version>_<name>.sql`` with ``-- +goose`` annotations
(case-insensitive, on their own line, as goose reads them):

- ``-- +goose Up`` (required, first) and ``-- +goose Down`` (optional) start the two parts;
- ``-- +goose StatementBegin`` / ``-- +goose StatementEnd`` enclose ONE statement that is kept
  verbatim (only surrounding whitespace, leading comments and a final semicolon are trimmed),
  with the line and column of its first SQL character;
- ``-- +goose NO TRANSACTION`` makes the migration non-transactional;
- ``-- +goose ENVSUB OFF`` is accepted; ``ENVSUB ON`` is refused (pgshift does not substitute
  environment variables, so the SQL would run with ``${VAR}`` left in it).

The version is the number before the first ``_`` (``00001`` is version ``1``, as goose records
it in ``goose_db_version``). Go migration files (``<version>_<name>.go``) are refused: pgshift
runs SQL only. A file without a Down part is irreversible (``down`` is None).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pgshift.errors import MigrationSourceError, SqlParseError
from pgshift.migrations import splitter
from pgshift.migrations.files import (
    file_matches,
    per_file,
    read_pieces,
    read_texts,
    require_dir,
    require_unique_versions,
)
from pgshift.migrations.model import Migration, SqlMigration, Statement, version_sort_key
from pgshift.migrations.splitter import SourceFile, Split, join_statements, read_source, split_sql

FORMAT = "goose"
FILE_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>.*)\.(?P<ext>sql|go)$")
ANNOTATION = re.compile(r"^--\s*\+goose\s+(?P<command>.*?)\s*$", re.I)
MARKER = re.compile(r"^--\s*\+goose\s", re.I | re.M)
_GOOSE = re.compile(r"\+goose", re.I)  # in every annotation line
_RUN_CHARS = 64 * 1024  # a run of plain SQL of a large file longer than this is read again when used


def claims(file: Path) -> bool:
    """Whether ``file``'s name is one of this format's migration files (no folder is read)."""
    return bool(FILE_NAME.match(file.name))


def detect(path: Path) -> bool:
    return any(file_matches(p, MARKER) for p in path.glob("*.sql") if FILE_NAME.match(p.name))


@dataclass
class _Part:
    start_line: int
    # Runs of plain SQL (streamed from the file when large) and StatementBegin blocks, in order.
    statements: list[Sequence[Statement]] = field(default_factory=list)


@dataclass
class _Parser:
    path: Path
    source: SourceFile  # the file; parts are split in place, by offsets, and a large one is never held
    up: _Part | None = None
    down: _Part | None = None
    transactional: bool = True
    block_start: int | None = None  # line of the open StatementBegin
    block_offset: int = 0  # where the line after it starts
    plain_start: int = 1  # first line of the current run of plain SQL
    plain_offset: int = 0  # where that line starts
    down_error: SqlParseError | None = None  # the Down part does not parse (its first error)
    split_sql: Split = split_sql  # or splitter.unsplit

    @property
    def where(self) -> str:
        return str(self.path)

    def current(self) -> _Part | None:
        return self.down or self.up

    def split(self, parse: Callable[[], Sequence[Statement]]) -> Sequence[Statement] | None:
        """``parse()``; None when it is in the Down part and does not parse: a broken Down part only
        blocks a rollback through this migration, as in goose."""
        try:
            return parse()
        except SqlParseError as exc:
            if self.down is None:
                raise
            self.down_error = self.down_error or exc
            return None

    def flush_plain(self, end: int) -> None:
        """Split the plain SQL from line plain_start to offset ``end`` (a line start) into the current part."""
        part = self.current()
        if part is None:
            for offset, line in enumerate(_lines(self.source, self.plain_offset, end)):
                if line.strip() and not line.lstrip().startswith("--"):
                    raise MigrationSourceError(
                        f"{self.path}:{self.plain_start + offset}: SQL before the '-- +goose Up' annotation.",
                        hint="goose requires the file to start with '-- +goose Up'.",
                    )
            return
        # A large file's runs between StatementBegin blocks are each small, but not all of them together.
        held = min(splitter.STREAM_CHARS, _RUN_CHARS)
        found = self.split(lambda: self.source.part(self.plain_start, self.plain_offset, end, held=held))
        if found:
            part.statements.append(found)

    def close_block(self, end: int) -> None:
        assert self.block_start is not None
        text = self.source.slice(self.block_offset, end)  # one statement: held, as it is to run it
        block_line = self.block_start + 1
        found = self.split(lambda: self.split_sql(text, file=self.where, base_line=block_line))
        if found is None:
            self.block_start = None
            return
        if not found:
            raise MigrationSourceError(
                f"{self.path}:{self.block_start}: the StatementBegin/StatementEnd block has no SQL."
            )
        first = found[0]
        offset = _offset(text, first.line - self.block_start - 1, first.column)
        sql = text[offset:].strip().rstrip(";").rstrip()
        part = self.current()
        assert part is not None
        part.statements.append([Statement(sql, self.where, first.line, first.column, 0)])
        self.block_start = None

    def annotate(self, number: int, command: str, line_end: int) -> None:
        where = f"{self.path}:{number}"
        if self.up is None and command in ("down", "statementbegin", "statementend"):
            raise MigrationSourceError(f"{where}: '-- +goose {command}' before '-- +goose Up'.")
        if command == "up":
            if self.up is not None:
                raise MigrationSourceError(f"{where}: a second '-- +goose Up' annotation.")
            self.up = _Part(number)
        elif command == "down":
            if self.down is not None:
                raise MigrationSourceError(f"{where}: a second '-- +goose Down' annotation.")
            self.down = _Part(number)
        elif command == "statementbegin":
            self.block_start, self.block_offset = number, line_end
        elif command == "statementend":
            raise MigrationSourceError(f"{where}: '-- +goose StatementEnd' without StatementBegin.")
        elif command == "no transaction":
            self.transactional = False
        elif command in ("envsub on", "envsubst on"):
            raise MigrationSourceError(
                f"{where}: '-- +goose ENVSUB ON' is not supported; pgshift does not substitute "
                "environment variables into SQL.",
                hint="write the values into the migration, or keep running it with goose.",
            )
        elif command not in ("envsub off", "envsubst off"):
            raise MigrationSourceError(
                f"{where}: unknown goose annotation '-- +goose {command}'.",
                hint="goose knows Up, Down, StatementBegin, StatementEnd, NO TRANSACTION, ENVSUB ON/OFF.",
            )

    def run(self) -> None:
        for number, line_start, line_end, line in self.source.lines:
            match = ANNOTATION.match(line.rstrip("\r\n"))
            if not match:
                continue
            command = " ".join(match.group("command").lower().split())
            if self.block_start is not None:
                if command != "statementend":
                    raise MigrationSourceError(
                        f"{self.path}:{number}: '-- +goose {match.group('command')}' inside a "
                        f"StatementBegin block opened on line {self.block_start}."
                    )
                self.close_block(line_start)
            else:
                self.flush_plain(line_start)
                self.annotate(number, command, line_end)
            self.plain_start, self.plain_offset = number + 1, line_end
        if self.block_start is not None:
            raise MigrationSourceError(
                f"{self.path}:{self.block_start}: StatementBegin without a matching '-- +goose StatementEnd'."
            )
        self.flush_plain(self.source.length)


def _offset(text: str, line_index: int, column: int) -> int:
    """Character offset in ``text`` of 0-based ``line_index`` and 1-based ``column``."""
    lines = text.splitlines(keepends=True)
    return sum(len(line) for line in lines[:line_index]) + column - 1


def _lines(source: SourceFile, start: int, end: int) -> Iterator[str]:
    """The lines of ``text[start:end]`` (``str.splitlines``), read in pieces when the file is large (its
    only line breaks are then newlines)."""
    if source.text is not None:
        yield from source.text[start:end].splitlines()
        return
    carry = ""
    for piece in read_pieces(source.path, start, end):
        *lines, carry = (carry + piece).split("\n")
        yield from (line.removesuffix("\r") for line in lines)
    if carry:
        yield carry.removesuffix("\r")


def parse_file(path: Path, version: str, name: str, *, split: Split = split_sql) -> Migration:
    source = read_source(path, _GOOSE, split)  # a large file is read in pieces, its text never held
    if source.blank:
        raise MigrationSourceError(f"The migration file {path} is empty.")
    checksum = source.checksum()
    parser = _Parser(path, source, split_sql=split)
    parser.run()
    if parser.up is None:
        raise MigrationSourceError(
            f"{path} has no '-- +goose Up' annotation.",
            hint="goose requires '-- +goose Up' above the migration's SQL.",
        )
    if not parser.up.statements:
        raise MigrationSourceError(f"{path} has no statements in its '-- +goose Up' part.")
    return SqlMigration(
        version=version,
        name=name,
        path=path,
        up=join_statements(parser.up.statements),
        down=join_statements(parser.down.statements) if parser.down and not parser.down_error else None,
        down_error=parser.down_error,
        checksum=checksum,
        source_format=FORMAT,
        transactional=parser.transactional,
        sort_key=version_sort_key(version),
    )


def load(path: Path, *, split: Split = split_sql) -> list[Migration]:
    require_dir(path)
    migrations: list[Migration] = []
    for file in sorted([*path.glob("*.sql"), *path.glob("*.go")]):
        match = FILE_NAME.match(file.name)
        if file.suffix == ".go":
            if match:
                raise MigrationSourceError(
                    f"{file} is a goose Go migration; pgshift runs SQL migrations only.",
                    hint="rewrite it as a .sql migration, or keep running it with goose.",
                )
            continue
        if not match or int(match.group("version")) < 1:
            raise MigrationSourceError(
                f"{file} is not named like a goose migration (<version>_<name>.sql with a version "
                "above 0, e.g. 00001_create_users.sql).",
                hint="rename it, or move files that are not migrations out of the folder.",
            )
        version, name = str(int(match.group("version"))), match.group("name")
        migrations.append(per_file(partial(parse_file, file, version, name, split=split), version=version, name=name,
                                   path=file, source_format=FORMAT, texts=partial(read_texts, file)))
    require_unique_versions(migrations)
    return sorted(migrations, key=lambda m: m.sort_key)
