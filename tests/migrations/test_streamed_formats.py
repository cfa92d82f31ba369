"""A goose, Flyway or Prisma file over 1 MB is read in pieces, never whole (splitter.read_source): the
streamed reading must give exactly what reading the whole text gives (statements, their lines and
columns, checksums, parse errors and every other error), wherever the pieces and the splitter's
chunks are cut. The thresholds and piece sizes are made tiny so small files take the streamed path."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgshift.db import mirror
from pgshift.errors import PgshiftError, SqlParseError
from pgshift.migrations import files, splitter
from pgshift.migrations.files import read_text
from pgshift.migrations.formats import flyway
from pgshift.migrations.loader import load_migrations
from pgshift.migrations.model import Migration, Statement, checksum_of

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
HUGE = 10**12


@contextmanager
def reading(*, streamed: bool, piece: int = 7, chunk: int = 40) -> Iterator[None]:
    """Every file read whole (as files of up to 1 MB are), or every file streamed in pieces of
    ``piece`` characters with every part split again from the file, ``chunk`` characters at a time."""
    saved = (files.STREAM_BYTES, files._READ_CHARS, splitter.STREAM_CHARS, splitter.CHUNK_CHARS,
             flyway._READ_BYTES)
    files._CHECKPOINTS.clear()
    if streamed:
        files.STREAM_BYTES, files._READ_CHARS, splitter.STREAM_CHARS = 0, piece, 0
        splitter.CHUNK_CHARS, flyway._READ_BYTES = chunk, piece
    else:
        files.STREAM_BYTES, splitter.STREAM_CHARS = HUGE, HUGE
    try:
        yield
    finally:
        (files.STREAM_BYTES, files._READ_CHARS, splitter.STREAM_CHARS, splitter.CHUNK_CHARS,
         flyway._READ_BYTES) = saved
        files._CHECKPOINTS.clear()


def _statements(part: Sequence[Statement] | None) -> object:
    return None if part is None else [(s.sql, s.file, s.line, s.column, s.index) for s in part]


def _error(exc: Exception | None) -> object:
    if exc is None:
        return None
    where = (exc.line, exc.column, exc.message) if isinstance(exc, SqlParseError) else None
    return type(exc).__name__, str(exc), where


def _described(m: Migration) -> object:
    # Twice: a streamed part's second pass is cut where its first pass found the statements.
    return (m.version, m.name, str(m.path), m.kind, m.transactional, m.checksum, _statements(m.up),
            _statements(m.up), _statements(m.down), _statements(m.down), _error(m.error), _error(m.down_error))


def _load(folder: Path, fmt: str) -> object:
    try:
        _, migrations = load_migrations(folder, fmt)
    except PgshiftError as exc:
        return _error(exc)
    return [_described(m) for m in migrations]


def _streamed_parts(folder: Path, fmt: str) -> int:
    """How many parts loaded as a sequence read from the file (not a list of statements)."""
    _, migrations = load_migrations(folder, fmt)
    return sum(not isinstance(part, list) for m in migrations for part in (m.up, m.down) if part is not None)


def _same(folder: Path, fmt: str, piece: int, chunk: int) -> None:
    with reading(streamed=False):
        whole = _load(folder, fmt)
    with reading(streamed=True, piece=piece, chunk=chunk):
        streamed = _load(folder, fmt)
    assert streamed == whole


def _checksums(folder: Path, fmt: str) -> dict[str, str]:
    """The checksum of each migration that loads, by its file's name, read streamed."""
    with reading(streamed=True, piece=3, chunk=10):
        _, migrations = load_migrations(folder, fmt)
    return {m.path.name: m.checksum for m in migrations if m.error is None}


def _checksum_of(*paths: Path) -> str:
    """checksum_of the files' texts (a .conf beside a Flyway script after it), read whole."""
    texts = [read_text(path) for path in paths if path.is_file()]
    return checksum_of(*[text for text in texts if text])


@pytest.mark.parametrize(("fmt", "folder"), [("goose", "goose"), ("flyway", "flyway/sql"), ("prisma", "prisma")])
@pytest.mark.parametrize(("piece", "chunk"), [(1, 1), (5, 30), (64, 200)])
def test_the_corpus_reads_the_same_streamed(fmt: str, folder: str, piece: int, chunk: int, tmp_path: Path) -> None:
    shutil.copytree(CORPUS / folder, tmp_path / "m")
    _same(tmp_path / "m", fmt, piece, chunk)
    with reading(streamed=True, piece=piece, chunk=chunk):
        assert _streamed_parts(tmp_path / "m", fmt) > 3  # the test went through the streamed reading


SQL = [
    "CREATE TABLE t{i} (id bigint PRIMARY KEY, note text);{nl}",
    "INSERT INTO t{i} VALUES (1, 'semi;{nl}colon;{nl}');{nl}",
    "CREATE FUNCTION f{i}() RETURNS int LANGUAGE plpgsql AS $${nl}BEGIN{nl}  RETURN 1;{nl}END;{nl}$$;{nl}",
    "/* a comment;{nl}with a cut; /* nested; */ */ ALTER TABLE t{i} ADD COLUMN c text;{nl}",
    "-- a comment; -- +goose Up -- flyway:encoding=latin1{nl}UPDATE t{i} SET note = '\u00fcn\u00ef' WHERE id = 1;{nl}",
    "{nl}   {nl}",
]
# Drawn less often, so that most files load: what does not parse, or not where it stands.
BROKEN = ["SELECT 1 FORM t{i};{nl}", "SELECT 'unterminated;{nl}", "SELECT 1 FROM t{i}{nl}",
          "INSERT INTO t{i} VALUES ('{nl}-- +goose Down{nl}');{nl}"]
GOOSE = [
    "-- +goose StatementBegin{nl}CREATE FUNCTION g{i}() RETURNS int LANGUAGE plpgsql AS $body${nl}BEGIN{nl}"
    "  RETURN 2; -- +goose StatementEnd{nl}END;{nl}$body$;{nl}-- +goose StatementEnd{nl}",
    "-- +goose NO TRANSACTION{nl}",
    "--   +GOOSE   envsub   off  {nl}",
]
GOOSE_BROKEN = ["-- +goose StatementBegin{nl}{nl}-- +goose StatementEnd{nl}", "-- +goose StatementEnd{nl}",
                "-- +goose ENVSUB ON{nl}", "-- +goose Down{nl}"]
FLYWAY = ["-- flyway:executeInTransaction=false{nl}", "{nl}  {nl}  --flyway:encoding = UTF-8  {nl}"]
FLYWAY_BROKEN = ["-- flyway:color=blue{nl}"]
PRISMA = ["BEGIN;{nl}", "COMMIT;{nl}"]


def _text(order: list[int], choices: list[str], nl: str, bom: bool) -> str:
    return ("\ufeff" if bom else "") + "".join(choices[p].format(i=i, nl=nl) for i, p in enumerate(order))


def _write(path: Path, order: list[int], choices: list[str], nl: str, bom: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_text(order, choices, nl, bom).encode())


def _orders(choices: list[str]) -> st.SearchStrategy[list[int]]:
    broken = {*BROKEN, *GOOSE_BROKEN, *FLYWAY_BROKEN}
    weighted = [i for i, c in enumerate(choices) for _ in range(1 if c in broken else 12)]
    return st.lists(st.sampled_from(weighted), min_size=1, max_size=14)


PIECE = st.integers(1, 40)
CHUNK = st.integers(1, 120)
NL = st.sampled_from(["\n", "\r\n"])
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


GOOSE_CHOICES = SQL + BROKEN + GOOSE + GOOSE_BROKEN
FLYWAY_CHOICES = SQL + BROKEN + FLYWAY + FLYWAY_BROKEN
PRISMA_CHOICES = SQL + BROKEN + PRISMA


@FAST
@given(order=_orders(GOOSE_CHOICES), down=st.one_of(st.none(), _orders(GOOSE_CHOICES)),
       before=st.sampled_from([False] * 6 + [True]), nl=NL, bom=st.booleans(), piece=PIECE, chunk=CHUNK)
def test_goose_reads_the_same_streamed(order: list[int], down: list[int] | None, before: bool, nl: str, bom: bool,
                                       piece: int, chunk: int, tmp_path: Path) -> None:
    folder = tmp_path / f"goose-{piece}-{chunk}"
    shutil.rmtree(folder, ignore_errors=True)
    body = _text(order, GOOSE_CHOICES, nl, False)
    up = f"-- +goose Up{nl}"
    text = ("\ufeff" if bom else "") + f"-- leading comment{nl}" + (body + up if before else up + body)
    if down is not None:
        text += f"-- +goose Down{nl}" + _text(down, GOOSE_CHOICES, nl, False)
    folder.mkdir()
    (folder / "00001_x.sql").write_bytes(text.encode())
    _same(folder, "goose", piece, chunk)
    assert _checksums(folder, "goose") in ({}, {"00001_x.sql": _checksum_of(folder / "00001_x.sql")})


@FAST
@given(order=_orders(FLYWAY_CHOICES), undo=st.one_of(st.none(), _orders(FLYWAY_CHOICES)),
       conf=st.booleans(), nl=NL, bom=st.booleans(), piece=PIECE, chunk=CHUNK)
def test_flyway_reads_the_same_streamed(order: list[int], undo: list[int] | None, conf: bool, nl: str, bom: bool,
                                        piece: int, chunk: int, tmp_path: Path) -> None:
    folder = tmp_path / f"flyway-{piece}-{chunk}"
    shutil.rmtree(folder, ignore_errors=True)
    choices = FLYWAY_CHOICES
    _write(folder / "V1__first.sql", order, choices, nl, bom)
    _write(folder / "repeatable" / "R__view.sql", list(reversed(order)), choices, nl, not bom)
    if undo is not None:
        _write(folder / "U1__first.sql", undo, choices, nl, bom)
    if conf:
        (folder / "V1__first.sql.conf").write_text("# script settings\nexecuteInTransaction=true\n")
    _same(folder, "flyway", piece, chunk)
    v1 = folder / "V1__first.sql"
    expected = {"V1__first.sql": _checksum_of(v1, v1.with_name(v1.name + ".conf"), folder / "U1__first.sql"),
                "R__view.sql": _checksum_of(folder / "repeatable" / "R__view.sql")}
    assert _checksums(folder, "flyway").items() <= expected.items()


@FAST
@given(orders=st.lists(_orders(PRISMA_CHOICES), min_size=1, max_size=3), nl=NL, bom=st.booleans(),
       piece=PIECE, chunk=CHUNK)
def test_prisma_reads_the_same_streamed(orders: list[list[int]], nl: str, bom: bool, piece: int, chunk: int,
                                        tmp_path: Path) -> None:
    folder = tmp_path / f"prisma-{piece}-{chunk}"
    shutil.rmtree(folder, ignore_errors=True)
    choices = PRISMA_CHOICES
    for n, order in enumerate(orders):
        _write(folder / f"2024010100000{n}_m{n}" / "migration.sql", order, choices, nl, bom)
    (folder / "migration_lock.toml").write_text('provider = "postgresql"\n')
    _same(folder, "prisma", piece, chunk)
    expected = {f"2024010100000{n}_m{n}": _checksum_of(folder / f"2024010100000{n}_m{n}" / "migration.sql")
                for n in range(len(orders))}
    with reading(streamed=True, piece=3, chunk=10):
        _, migrations = load_migrations(folder, "prisma")
    assert {m.path.parent.name: m.checksum for m in migrations if m.error is None}.items() <= expected.items()


def test_an_explicit_transaction_around_a_streamed_prisma_file_is_dropped(tmp_path: Path) -> None:
    """Prisma's own BEGIN ... COMMIT around a migration: dropped from a streamed part too, the rest
    numbered from 0."""
    folder = tmp_path / "20240101000000_enum"
    folder.mkdir()
    (folder / "migration.sql").write_text("BEGIN;\n" + "".join(SQL[:4]).format(i=1, nl="\n") + "COMMIT;\n")
    with reading(streamed=True, piece=11, chunk=25):
        _, [migration] = load_migrations(tmp_path, "prisma")
        assert not isinstance(migration.up, list)
        assert [(s.index, s.sql.split()[0]) for s in migration.up] == [
            (0, "CREATE"), (1, "INSERT"), (2, "CREATE"), (3, "ALTER")]


@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize("nl", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("piece", [1, 2, 3, 1 << 20])
def test_file_checksums_are_computed_in_pieces(bom: bool, nl: str, piece: int, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Flyway's CRC32 of the lines and Prisma's SHA-256 of the bytes, read a piece at a time, equal
    the checksums of the whole file (multi-byte characters and CRLF cut between pieces)."""
    text = ("\ufeff" if bom else "") + "".join(SQL).format(i=1, nl=nl) + nl.join(["", "-- \u00fc\u20ac\U0001f600", ""])
    path = tmp_path / "V1__x.sql"
    path.write_bytes(text.encode() + b"\xff-- not UTF-8\n")
    monkeypatch.setattr(flyway, "_READ_BYTES", piece)
    assert mirror._flyway_file_checksum(path) == mirror.flyway_checksum(path.read_bytes())
    assert mirror._prisma_file_checksum(path) == mirror.prisma_checksum(path.read_bytes())
    path.write_bytes(text.encode())
    assert flyway.flyway_file_checksum(path) == flyway.flyway_checksum(text)
    assert mirror.prisma_checksum(path.read_bytes()) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_inline_flyway_setting_names_its_own_line(tmp_path: Path) -> None:
    """A `-- flyway:` line after blank lines is named by its own number (the pattern, matched over the
    whole text, began at the first blank line above it)."""
    (tmp_path / "V1__x.sql").write_text("SELECT 1;\n\n\n-- flyway:color=blue\n")
    _, [migration] = load_migrations(tmp_path, "flyway")
    assert migration.error is not None and str(migration.error).startswith(f"{tmp_path / 'V1__x.sql'}:4:")


def test_a_read_from_the_middle_of_a_large_file_seeks_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a large file was read to its end, a read of a part of it starts at the piece before that
    part (goose's runs between blocks, each streamed part read again), not at the file's start."""
    path = tmp_path / "big.sql"
    text = "\ufeff" + "".join(f"SELECT {i}, '\u00fc\u20ac';\r\n" for i in range(20_000))
    path.write_text(text, encoding="utf-8", newline="")
    expected = text[1:].replace("\r\n", "\n")  # as read_text reads it
    monkeypatch.setattr(files, "STREAM_BYTES", 1000)
    monkeypatch.setattr(files, "_READ_CHARS", 4096)
    files._CHECKPOINTS.clear()
    reads = [0]
    real_open = open

    class Counting:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.file = real_open(*args, **kwargs)

        def read(self, size: int) -> str:
            reads[0] += 1
            return str(self.file.read(size))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.file, name)

        def __enter__(self) -> Counting:
            return self

        def __exit__(self, *exc: object) -> None:
            self.file.close()

    monkeypatch.setattr(files, "open", Counting, raising=False)
    assert "".join(files.read_pieces(path)) == expected
    whole = reads[0]
    assert whole > 50
    for start in (0, 1, 4095, 4096, 100_000, len(expected) - 10):
        reads[0] = 0
        assert "".join(files.read_pieces(path, start, start + 5000)) == expected[start:start + 5000]
        assert reads[0] <= 3, (start, reads[0])
    files._CHECKPOINTS.clear()
