"""Split SQL into statements with PostgreSQL's own parser (pglast / libpg_query).

Dollar quotes, nested ``$tag$`` quotes, ``BEGIN ATOMIC`` bodies and comments survive because
the real grammar decides where a statement ends. Every statement keeps its file, line and
column; a parse error names file:line:column.

Large texts are split in chunks of about 256 kB and no parse tree is built, so time grows
linearly with the text and memory with a chunk (the statements' text is kept, once).
"""

from __future__ import annotations

import os
import re
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol, overload

from pglast import parser
from pglast.parser import ParseError

from pgshift.errors import MigrationSourceError, SqlParseError
from pgshift.migrations.files import ScannedFile, lines_containing, read_pieces, read_text, scan_file
from pgshift.migrations.model import Statement

if TYPE_CHECKING:
    import hashlib  # only for annotations: hashlib (OpenSSL) loads where a hash is taken, not for a plain lint

CHUNK_CHARS = 256 * 1024
_STATEMENT_END = re.compile(r";[ \t]*\r?\n")
# What may separate two statements: PostgreSQL's whitespace, ';' and '--' comments ('/*' is nested).
_GAP = re.compile(r"(?:[ \t\n\r\f\v;]+|--[^\n\r]*)*")


def line_col(text: str, offset: int, *, base_line: int = 1) -> tuple[int, int]:
    """1-based line and column of character ``offset`` in ``text``."""
    line = text.count("\n", 0, offset) + base_line
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


class _Positions:
    """line_col for increasing offsets, counting each newline once (line_col from 0 each time is quadratic)."""

    def __init__(self, text: str, base_line: int, start: int = 0) -> None:
        self.text, self.base_line, self.start = text, base_line, start  # start: where line base_line starts
        self.offset, self.line, self.line_start = start, base_line, start

    def at(self, offset: int) -> tuple[int, int]:
        if offset < self.offset:  # backwards: count again from the start
            self.offset, self.line, self.line_start = self.start, self.base_line, self.start
        newlines = self.text.count("\n", self.offset, offset)
        if newlines:
            self.line += newlines
            self.line_start = self.text.rfind("\n", self.offset, offset) + 1
        self.offset = offset
        return self.line, offset - self.line_start + 1


def _cut_points(text: str, start: int, end: int) -> Iterator[int]:
    """Offsets just after a line ending in ';', about every CHUNK_CHARS. A cut inside a string, a
    quoted name, a dollar-quoted body, a block comment or a BEGIN ATOMIC body leaves the chunk
    before it unterminated, so it fails to parse: a wrong cut is always noticed."""
    position = start + CHUNK_CHARS
    while position < end:
        match = _STATEMENT_END.search(text, position, end)
        if match is None:
            return
        yield match.end()
        position = match.end() + CHUNK_CHARS


def _skip_gap(text: str, position: int) -> int:
    while True:
        position = _GAP.match(text, position).end()  # type: ignore[union-attr]  # the pattern matches ""
        if not text.startswith("/*", position):
            return position
        depth, position = 1, position + 2
        while depth:
            opening, closing = text.find("/*", position), text.find("*/", position)
            if closing < 0:
                return len(text)
            if 0 <= opening < closing:
                depth, position = depth + 1, opening + 2
            else:
                depth, position = depth - 1, closing + 2


def _spans_of(piece: str) -> list[tuple[int, int]]:
    """(start, end) of each statement of ``piece``, from the first token to the last one.
    ParseError if it does not parse."""
    texts = parser.split(piece)
    spans: list[tuple[int, int]] = []
    position = 0
    for stmt in texts:
        start = _skip_gap(piece, position)
        if not piece.startswith(stmt, start):  # not where expected (odd whitespace): ask for exact slices
            return [(s.start, s.stop) for s in parser.split(piece, only_slices=True)]
        position = start + len(stmt)
        spans.append((start, position))
    return spans


def statement_spans(text: str, section_start: int = 0, section_end: int | None = None) -> Iterator[tuple[int, int]]:
    """(start, end) character offsets of every statement of ``text`` (or of its part from
    ``section_start`` to ``section_end``, without copying it), in order, chunk by chunk.
    ParseError (with the character offset in ``text``) if the text does not parse."""
    section_end = len(text) if section_end is None else section_end
    bounds = [section_start, *_cut_points(text, section_start, section_end), section_end]
    index = 0
    while index < len(bounds) - 1:
        start, end = bounds[index], bounds[index + 1]
        try:
            spans = _spans_of(text[start:end])
            index += 1
        except ParseError:
            # A cut fell inside a statement: try with the next chunk, then with the rest in one piece.
            try:
                if index + 2 >= len(bounds):
                    raise
                spans = _spans_of(text[start:bounds[index + 2]])
                index += 2
            except ParseError:
                try:
                    spans = _spans_of(text[start:section_end])
                except ParseError as exc:
                    offset = exc.args[1] if len(exc.args) > 1 and exc.args[1] is not None else section_end - start
                    raise ParseError(exc.args[0], start + int(offset)) from exc
                index = len(bounds)
        for a, b in spans:
            yield start + a, start + b


_NOT_BLANK = re.compile(r"\S")


def split_sql(text: str, *, file: str = "<stdin>", base_line: int = 1, start: int = 0,
              end: int | None = None) -> list[Statement]:
    """Statements of ``text``, or of ``text[start:end]`` without copying that part (a file's
    section); ``base_line`` is the file line where that text starts."""
    end = len(text) if end is None else end
    if _NOT_BLANK.search(text, start, end) is None:
        return []
    return _split(text, file, base_line, start, end)


def unsplit(text: str, *, file: str = "<stdin>", base_line: int = 1, start: int = 0,
            end: int | None = None) -> list[Statement]:
    """``text[start:end]`` as one statement holding all of it, parsing nothing: how the readers split
    for commands that run no SQL (``adopt`` records history only), so SQL that does not parse, or
    parses differently, cannot stop them."""
    end = len(text) if end is None else end
    if _NOT_BLANK.search(text, start, end) is None:
        return []
    text = text[start:end]
    first = len(text) - len(text.lstrip())
    line, column = line_col(text, first, base_line=base_line)
    return [Statement(text.strip(), file, line, column, 0)]


def split_file_part(split: Split, text: str, *, file: str, base_line: int = 1, start: int = 0,
                    end: int | None = None) -> Sequence[Statement]:
    """``split(text, ...)`` for ``text``, the whole text of the file ``file`` as read_text reads it: a
    part larger than STREAM_CHARS is split once here (to count it and find any parse error, with the
    same message) but not kept (:class:`StreamedStatements`)."""
    end = len(text) if end is None else end
    if split is not split_sql or end - start <= STREAM_CHARS:
        return split(text, file=file, base_line=base_line, start=start, end=end)
    stamp = FileStamp.of(file)
    count = sum(1 for _ in _statements(text, file, base_line, start, end))
    return StreamedStatements(file, start, end, base_line, count, stamp)


class Split(Protocol):
    """How a reader turns SQL text into statements: :func:`split_sql`, or :func:`unsplit`."""

    def __call__(self, text: str, *, file: str = ..., base_line: int = ..., start: int = ...,
                 end: int | None = ...) -> list[Statement]: ...


def _split(text: str, file: str, base_line: int, section_start: int, section_end: int) -> list[Statement]:
    return list(_statements(text, file, base_line, section_start, section_end))


def _statements(text: str, file: str, base_line: int, section_start: int, section_end: int) -> Iterator[Statement]:
    positions = _Positions(text, base_line, section_start)
    index = 0
    try:
        for start, end in statement_spans(text, section_start, section_end):
            sql = text[start:end].rstrip().rstrip(";").rstrip()
            if not sql:
                continue
            line, column = positions.at(start)
            yield Statement(sql, file, line, column, index)
            index += 1
    except ParseError as exc:
        section = text[section_start:section_end]  # the error names (and lint re-reads) the part alone
        message = str(exc.args[0]) if exc.args else str(exc)
        offset = int(exc.args[1]) - section_start if len(exc.args) > 1 and exc.args[1] is not None else len(section)
        line, column = line_col(section, max(0, min(offset, len(section))), base_line=base_line)
        raise SqlParseError(message, file=file, line=line, column=column, text=section,
                            base_line=base_line) from exc


# A part larger than this (characters) is not kept in memory: its statements are counted when the file
# loads and read again from the file, chunk by chunk, each time they are used (StreamedStatements).
STREAM_CHARS = 1_000_000
READ_CHARS = 1 << 20


class FileStamp(NamedTuple):
    """What says a file is still the one that was loaded: its size and modification time."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str) -> FileStamp:
        found = os.stat(path)
        return cls(found.st_size, found.st_mtime_ns)


class StreamedStatements(Sequence[Statement]):
    """The statements of ``text[start:end]`` of a file read as :func:`pgshift.migrations.files.read_text`
    reads it (UTF-8, universal newlines, without a leading byte order mark), split again from the file
    each time they are iterated, so that memory holds a chunk of them, never the part.

    Counted (and checked to parse) when the file loads; a file changed since is an error, never other
    statements. ``first``/``stop`` make a view of some of them (``reindex``: numbered from 0 again)."""

    def __init__(self, path: str, start: int, end: int, base_line: int, total: int, stamp: FileStamp,
                 first: int = 0, stop: int | None = None, reindex: bool = False,
                 spans: array[int] | None = None) -> None:
        self.path, self.start, self.end, self.base_line = path, start, end, base_line
        self.total, self.stamp = total, stamp
        self.first, self.stop, self.reindex = first, total if stop is None else stop, reindex
        # (start, end, line, column) of each statement, 4 numbers each, once a pass read them all
        self.spans: array[int] | None = spans

    def __len__(self) -> int:
        return max(0, self.stop - self.first)

    def __repr__(self) -> str:
        return f"<{len(self)} statements of {self.path}, read when used>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StreamedStatements):
            return self._identity() == other._identity()
        return isinstance(other, Sequence) and len(other) == len(self) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def _identity(self) -> tuple[object, ...]:
        return (self.path, self.start, self.end, self.base_line, self.total, self.stamp, self.first, self.stop,
                self.reindex)

    def __iter__(self) -> Iterator[Statement]:
        if FileStamp.of(self.path) != self.stamp:
            raise self._changed()
        if self.spans is not None:
            yield from self._from_spans(self.spans)
            return
        seen = 0
        spans: array[int] = array("q")
        try:
            for statement in stream_statements(read_pieces(Path(self.path), self.start, self.end), self.path,
                                               self.base_line, spans):
                seen += 1
                if statement.index < self.first:
                    continue
                if statement.index >= self.stop:
                    return
                yield (statement if not self.reindex else
                       Statement(statement.sql, statement.file, statement.line, statement.column,
                                 statement.index - self.first))
        except (ParseError, UnicodeDecodeError, OSError) as exc:
            raise self._changed() from exc
        if seen != self.total:
            raise self._changed()
        self.spans = spans  # read to the end: later passes need not split again

    def _from_spans(self, spans: array[int]) -> Iterator[Statement]:
        """The statements again, cut where the first pass found them (no parser), a chunk at a time."""
        pieces = read_pieces(Path(self.path), self.start, self.end)
        buffer, base = "", 0  # buffer is the text from offset base
        try:
            for index in range(self.first, self.stop):
                start, end, line, column = spans[4 * index:4 * index + 4]
                done = min(start - base, len(buffer))
                if done > len(buffer) // 2:  # drop what is done, not on every statement
                    buffer, base = buffer[done:], base + done
                while base + len(buffer) < end:
                    piece = next(pieces, None)
                    if piece is None:
                        raise self._changed()
                    buffer += piece
                yield Statement(buffer[start - base:end - base], self.path, line, column,
                                index - self.first if self.reindex else index)
        except (UnicodeDecodeError, OSError) as exc:
            raise self._changed() from exc

    def _changed(self) -> MigrationSourceError:
        return MigrationSourceError(
            f"The migration file {self.path} changed (or became unreadable) after pgshift loaded it; its "
            "statements are read again from the file when they run.",
            hint="run the command again once the file is no longer being edited.")

    @overload
    def __getitem__(self, index: int) -> Statement: ...

    @overload
    def __getitem__(self, index: slice) -> StreamedStatements: ...

    def __getitem__(self, index: int | slice) -> Statement | StreamedStatements:
        if isinstance(index, slice):
            first, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("a streamed part is sliced without a step")
            return StreamedStatements(self.path, self.start, self.end, self.base_line, self.total, self.stamp,
                                      self.first + first, self.first + max(first, stop), self.reindex, self.spans)
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError(index)
        return next(iter(self[position:position + 1]))

    def renumbered(self) -> StreamedStatements:
        """The same statements, numbered from 0 (``Statement.index``), as a list of them would be."""
        return StreamedStatements(self.path, self.start, self.end, self.base_line, self.total, self.stamp,
                                  self.first, self.stop, reindex=True, spans=self.spans)


class JoinedStatements(Sequence[Statement]):
    """The statements of several parts, some of them streamed, as one sequence numbered from ``offset``
    as a list of them would be (a goose part: its runs of plain SQL and its StatementBegin blocks).
    Holds the parts, not their statements."""

    def __init__(self, parts: Sequence[Sequence[Statement]], offset: int = 0) -> None:
        self.parts = [part for part in parts if len(part)]
        self.offset = offset
        self.length = sum(len(part) for part in self.parts)

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return f"<{self.length} statements of {len(self.parts)} parts, read when used>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(other) == len(self) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __iter__(self) -> Iterator[Statement]:
        index = self.offset
        for part in self.parts:
            for statement in part:
                yield Statement(statement.sql, statement.file, statement.line, statement.column, index)
                index += 1

    @overload
    def __getitem__(self, index: int) -> Statement: ...

    @overload
    def __getitem__(self, index: slice) -> JoinedStatements: ...

    def __getitem__(self, index: int | slice) -> Statement | JoinedStatements:
        if isinstance(index, slice):
            first, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("a streamed part is sliced without a step")
            parts, at = [], 0
            for part in self.parts:
                low, high = max(first - at, 0), min(stop - at, len(part))
                if low < high:
                    parts.append(part[low:high])
                at += len(part)
            return JoinedStatements(parts, self.offset + first)
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError(index)
        return next(iter(self[position:position + 1]))


def join_statements(parts: Sequence[Sequence[Statement]]) -> Sequence[Statement]:
    """``parts`` as one sequence numbered from 0: a list when every part is one (a small file, as
    before), else :class:`JoinedStatements`, which holds none of a streamed part's statements."""
    if all(isinstance(part, list) for part in parts):
        return [Statement(s.sql, s.file, s.line, s.column, index)
                for index, s in enumerate(s for part in parts for s in part)]
    return JoinedStatements(parts)


def stream_statements(pieces: Iterator[str], file: str, base_line: int,
                      spans_out: array[int] | None = None) -> Iterator[Statement]:
    """The statements of the text ``pieces`` make up, split as :func:`split_sql` splits it (the same cuts,
    the same statements, lines and columns), holding a chunk or two of it at a time. ParseError when
    it does not parse. ``spans_out`` gets (start, end, line, column) of each statement's text."""
    buffer = ""
    dropped = 0  # characters of the text before buffer[0]
    line = base_line  # of buffer[0], which is always at a line's start but for the part's first line
    index = 0
    more = True

    def cut_after(position: int) -> int | None:
        """The first cut at or after ``position`` (reading on as needed); None at the end of the text."""
        nonlocal buffer, more
        while True:
            match = _STATEMENT_END.search(buffer, position)
            if match is not None:
                return match.end()
            if not more:
                return None
            piece = next(pieces, None)
            if piece is None:
                more = False
            else:
                buffer += piece

    while True:
        if not buffer and more:
            buffer = next(pieces, "")
            more = bool(buffer)
        if not more and _NOT_BLANK.search(buffer) is None:
            return
        first = cut_after(CHUNK_CHARS)
        ends = [first] if first is not None else []
        if first is not None:
            second = cut_after(first + CHUNK_CHARS)
            ends.append(second if second is not None else -1)
        spans: list[tuple[int, int]] | None = None
        used = 0
        for end in ends:
            if end == -1:
                break
            try:
                spans, used = _spans_of(buffer[:end]), end
                break
            except ParseError:
                continue
        if spans is None:  # the rest in one piece
            buffer += "".join(pieces)
            more = False
            spans, used = _spans_of(buffer), len(buffer)
        positions = _Positions(buffer, line, 0)
        for start, end in spans:
            sql = buffer[start:end].rstrip().rstrip(";").rstrip()
            if not sql:
                continue
            at_line, column = positions.at(start)
            if spans_out is not None:
                spans_out.extend((dropped + start, dropped + start + len(sql), at_line, column))
            yield Statement(sql, file, at_line, column, index)
            index += 1
        line += buffer.count("\n", 0, used)
        buffer = buffer[used:]
        dropped += used
        if not buffer and not more:
            return


def split_streamed(path: Path, start: int, end: int, *, base_line: int, stamp: FileStamp,
                   held: int | None = None) -> Sequence[Statement]:
    """The statements of ``read_text(path)[start:end]``, split from the file without holding its text:
    a list when the part is of at most ``held`` characters (default STREAM_CHARS), else
    :class:`StreamedStatements`; the same statements, positions and parse errors as :func:`split_sql`
    of that text."""
    file = str(path)
    try:
        spans: array[int] = array("q")
        found = stream_statements(read_pieces(path, start, end), file, base_line, spans)
        if end - start <= (STREAM_CHARS if held is None else held):
            return list(found)
        total = sum(1 for _ in found)
        return StreamedStatements(file, start, end, base_line, total, stamp, spans=spans)
    except ParseError:
        # The error as split_sql words it, from the part alone (what it names, and lint re-reads).
        return split_sql("".join(read_pieces(path, start, end)), file=file, base_line=base_line)
    except (OSError, UnicodeDecodeError) as exc:
        raise MigrationSourceError(f"The migration file {path} changed (or became unreadable) while pgshift "
                                   f"read it: {exc}.", hint="run the command again.") from exc


@dataclass
class SourceFile:
    """A migration file as its reader needs it: the hash of its text (as checksum_of hashes it, without
    the closing separator), its length, whether it is blank, the (number, start, end, text) of each line
    containing the reader's marker, and its parts split by :meth:`part`. A file larger than
    STREAM_BYTES (pgshift.migrations.files) is read in pieces and its text never held; a smaller one
    is read whole, as before."""

    path: Path
    digest: hashlib._Hash
    length: int
    blank: bool
    lines: list[tuple[int, int, int, str]]
    split: Split
    text: str | None = None  # the whole text, when read whole
    stamp: FileStamp | None = field(default=None)

    def checksum(self) -> str:
        digest = self.digest.copy()
        digest.update(b"\x00")
        return digest.hexdigest()

    def hash_into(self, digest: hashlib._Hash) -> None:
        """Hash the file's text into ``digest`` as checksum_of does (a migration of more than one file)."""
        for piece in (self.text,) if self.text is not None else read_pieces(self.path):
            _hash_text(digest, piece)

    def part(self, base_line: int, start: int = 0, end: int | None = None, *,
             held: int | None = None) -> Sequence[Statement]:
        """The statements of ``text[start:end]``, the file's text from line ``base_line``. Of a large
        file, a part of more than ``held`` characters (default STREAM_CHARS) is read again when used."""
        end = self.length if end is None else end
        if self.text is not None:
            return split_file_part(self.split, self.text, file=str(self.path), base_line=base_line, start=start,
                                   end=end)
        assert self.stamp is not None
        return split_streamed(self.path, start, end, base_line=base_line, stamp=self.stamp, held=held)

    def slice(self, start: int, end: int) -> str:
        """``text[start:end]`` (a few lines before a marker, a goose StatementBegin block)."""
        return self.text[start:end] if self.text is not None else "".join(read_pieces(self.path, start, end))


def read_source(path: Path, marker: str | re.Pattern[str] | None, split: Split) -> SourceFile:
    """``path`` read for its reader (MigrationSourceError when it cannot be, as read_text says): in pieces
    when it is large and is split with split_sql (unsplit, for `adopt`, holds the text anyway)."""
    if split is split_sql:
        try:
            stamp: FileStamp | None = FileStamp.of(str(path))
        except OSError:
            stamp = None
        scanned: ScannedFile | None = scan_file(path, marker) if stamp is not None else None
        if scanned is not None:
            return SourceFile(path, scanned.digest, scanned.length, scanned.blank, scanned.lines, split, stamp=stamp)
    text = read_text(path)
    import hashlib

    digest = hashlib.sha256()
    _hash_text(digest, text)
    lines = [] if marker is None else [(number, start, end, text[start:end])
                                       for number, start, end in lines_containing(text, marker)]
    return SourceFile(path, digest, len(text), not text or text.isspace(), lines, split, text=text)


def _hash_text(digest: hashlib._Hash, text: str) -> None:
    """``digest.update(text.encode())`` a megabyte at a time (no second copy of a large text)."""
    for at in range(0, len(text), READ_CHARS):
        digest.update(text[at:at + READ_CHARS].encode())


def split_down(parse: Callable[[], Sequence[Statement]]) -> tuple[Sequence[Statement] | None, SqlParseError | None]:
    """(statements, None) of a down part, or (None, its parse error): the original tools only
    fail when that rollback runs, so a broken down part must not stop loading the folder."""
    try:
        return parse(), None
    except SqlParseError as exc:
        return None, exc


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


def first_word(sql: str) -> str | None:
    """The statement's first word in upper case, after comments and whitespace; None when it does not
    start with a plain ASCII word (a parenthesis, or a name with other characters)."""
    match = _WORD.match(sql, _skip_gap(sql, 0))
    if match is None or not sql[match.end():match.end() + 1].isascii():
        return None
    return match.group().upper()
