"""Small helpers shared by the folder readers."""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pgshift.errors import MigrationSourceError
from pgshift.migrations.model import Kind, Migration, SqlMigration, checksum_of, version_sort_key

if TYPE_CHECKING:
    import hashlib  # only for annotations: hashlib (OpenSSL) loads where a hash is taken, not for a plain lint


def broken_link(path: Path) -> str | None:
    """'is a symbolic link to X, which does not exist' when ``path`` is a dangling (or looping) link."""
    if not path.is_symlink():
        return None
    try:
        path.stat()
        return None
    except OSError as exc:
        target = os.readlink(path)
        if not os.path.isabs(target):
            target = f"{target} ({os.path.normpath(path.parent / target)})"
        why = "does not exist" if isinstance(exc, FileNotFoundError) else f"cannot be followed ({exc.strerror})"
        return f"is a symbolic link to {target}, which {why}"


def read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if problem := broken_link(path):
            raise MigrationSourceError(f"The migration file {path} {problem}.",
                                       hint="point the link at the file, or remove it.") from None
        raise MigrationSourceError(f"The migration file {path} does not exist.") from None
    except UnicodeDecodeError as exc:
        raise MigrationSourceError(f"{path} is not UTF-8 text (byte {exc.start}).") from exc
    except OSError as exc:
        raise MigrationSourceError(f"{path} cannot be read: {exc.strerror}.") from exc
    return text.lstrip("\ufeff")


# str.splitlines' line breaks; those other than "\n" and "\r\n" are rare, and without them lines are
# found with str.find and counted with str.count, in C.
_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
_OTHER_BREAKS = re.compile(f"\r(?!\n)|[{_BREAKS[2:]}]")
_LINE = re.compile(f"[^{_BREAKS}]*(?:\r\n|[{_BREAKS}]|\\Z)")


def lines_containing(text: str, needle: str | re.Pattern[str]) -> Iterator[tuple[int, int, int]]:
    """(number, start, end) of each line of ``text.splitlines(keepends=True)`` that contains
    ``needle`` (a string or pattern matching no line break): its 1-based number and
    ``text[start:end]`` is the line with its ending. Finds marker lines of a large file without
    holding it as a list of lines."""
    pattern = needle if isinstance(needle, re.Pattern) else re.compile(re.escape(needle))
    if _OTHER_BREAKS.search(text) is None:
        number, counted, position = 1, 0, 0
        while (match := pattern.search(text, position)) is not None:
            found = match.start()
            start = text.rfind("\n", 0, found) + 1
            end = text.find("\n", found) + 1 or len(text)
            number += text.count("\n", counted, start)
            counted, position = start, end
            yield number, start, end
        return
    for number, line in enumerate(_LINE.finditer(text), start=1):
        start, end = line.span()
        if start == end:  # \Z after the last line ending: not a line
            return
        if pattern.search(text, start, end) is not None:
            yield number, start, end


def require_dir(path: Path) -> Path:
    if problem := broken_link(path):
        raise MigrationSourceError(
            f"The migrations folder {path} {problem}.",
            hint="point the link at the migrations folder (or remove it), or set migrations_dir / --dir.",
        )
    if not path.exists():
        raise MigrationSourceError(
            f"The migrations folder {path} does not exist.",
            hint="create it with `pgshift init`, or set migrations_dir in pgshift.toml / --dir.",
        )
    if not path.is_dir():
        raise MigrationSourceError(f"{path} is not a folder; migrations_dir must name a folder.")
    return path


def named_sql_files(
    path: Path, pattern: re.Pattern[str], *, tool: str, example: str,
    hint: str = "rename it, or move files that are not migrations out of the folder.",
) -> Iterator[tuple[Path, re.Match[str]]]:
    """Every .sql file of the folder with its name matched; a file named otherwise is an error."""
    require_dir(path)
    for file in sorted(path.glob("*.sql")):
        match = pattern.match(file.name)
        if not match:
            raise MigrationSourceError(f"{file} is not named like a {tool} migration ({example}).", hint=hint)
        yield file, match


def in_order(migrations: list[Migration]) -> list[Migration]:
    """Refuse duplicate versions; sort by version."""
    require_unique_versions(migrations)
    return sorted(migrations, key=lambda m: m.sort_key)


def require_unique_versions(migrations: list[Migration]) -> None:
    seen: dict[tuple[object, ...], Path] = {}
    for m in migrations:
        if m.kind != "versioned":
            continue
        if m.sort_key in seen:  # "1" and "01" are the same version
            raise MigrationSourceError(
                f"Two migrations have version {m.version}: {seen[m.sort_key]} and {m.path}.",
                hint="give one of them a new version (rename the file).",
            )
        seen[m.sort_key] = m.path


def read_texts(*paths: Path | None) -> list[str]:
    return [read_text(p) for p in paths if p is not None]


def per_file(parse: Callable[[], Migration], *, version: str, name: str, path: Path, source_format: str,
             texts: Callable[[], list[str]], kind: Kind = "versioned") -> Migration:
    """``parse()``, or when that file cannot be used, a migration carrying the error and no
    statements: one broken file is refused where it matters (running or rolling back that
    migration) instead of blocking status, adopt and lint of every other file. ``texts`` gives
    what the checksum covers, so an applied (e.g. adopted) file still matches its ledger row."""
    try:
        return parse()
    except MigrationSourceError as exc:
        try:
            checksum = checksum_of(*texts())
        except MigrationSourceError:  # unreadable: it cannot match a recorded checksum anyway
            checksum = ""
        return SqlMigration(version=version, name=name, path=path, up=[], down=None, checksum=checksum,
                         source_format=source_format, kind=kind, sort_key=version_sort_key(version), error=exc)


# A file larger than this is read in pieces (scan_file, file_matches), never whole.
STREAM_BYTES = 1_000_000
_READ_CHARS = 1 << 20


@dataclass
class ScannedFile:
    """A large file read once, a piece at a time, as read_text reads it: the hash of its text (as
    checksum_of hashes it, without the closing separator), its length in characters, whether it is
    blank, and (number, start, end, text) of each line containing the needle, as lines_containing
    gives them."""

    digest: hashlib._Hash
    length: int
    blank: bool
    lines: list[tuple[int, int, int, str]]


def scan_file(path: Path, needle: str | re.Pattern[str] | None) -> ScannedFile | None:
    """The file scanned without holding its text, or None when it should be read whole: it is small,
    cannot be read as UTF-8 (read_text says why), or has line breaks other than newlines (which
    str.splitlines, and so the readers' line numbers, count)."""
    try:
        if path.stat().st_size <= STREAM_BYTES:
            return None
        import hashlib

        digest = hashlib.sha256()
        length, number, blank, carry = 0, 1, True, ""
        lines: list[tuple[int, int, int, str]] = []

        def collect(text: str, base: int) -> None:
            if needle is None:
                return
            for at, start, end in lines_containing(text, needle):
                lines.append((number + at - 1, base + start, base + end, text[start:end]))

        for piece in read_pieces(path):
            digest.update(piece.encode())
            blank = blank and piece.isspace()
            if _OTHER_BREAKS.search(piece):
                return None
            text, base = carry + piece, length - len(carry)
            cut = text.rfind("\n") + 1
            collect(text[:cut], base)
            number += text.count("\n", 0, cut)
            carry, length = text[cut:], length + len(piece)
        collect(carry, length - len(carry))
    except (OSError, UnicodeDecodeError):
        return None
    return ScannedFile(digest, length, blank, lines)


# Where the pieces of a large file start, as (character offset, TextIOWrapper.tell() cookie), noted on a
# read from its start: a later read from the middle (a goose part after a StatementBegin block, a
# streamed part read again) seeks there instead of decoding everything before it. Kept per file
# version (inode, size, mtime: what StreamedStatements checks too), for a few files.
_CHECKPOINTS: OrderedDict[tuple[str, int, int, int], list[tuple[int, int]]] = OrderedDict()
_CHECKPOINT_FILES = 16


def read_pieces(path: Path, start: int = 0, end: int | None = None) -> Iterator[str]:
    """``read_text(path)[start:end]``, a piece at a time (OSError, UnicodeDecodeError)."""
    position, stripping = 0, True  # read_text drops leading byte order marks
    with open(path, encoding="utf-8") as file:
        found = os.fstat(file.fileno())
        key = (str(path), found.st_ino, found.st_size, found.st_mtime_ns)
        checkpoints = _CHECKPOINTS.get(key)
        noting = checkpoints is None
        if checkpoints is None:
            checkpoints = []
        else:
            _CHECKPOINTS.move_to_end(key)
            before = [point for point in checkpoints if point[0] <= start]
            if before:
                position, cookie = before[-1]
                file.seek(cookie)
                stripping = False
        while end is None or position < end:
            data = file.read(_READ_CHARS)
            if not data:
                break
            if stripping:
                data = data.lstrip("\ufeff")
                if not data:
                    continue
                stripping = False
            low, high = max(start - position, 0), len(data) if end is None else min(end - position, len(data))
            if low < high:
                yield data[low:high]
            position += len(data)
            if noting:
                checkpoints.append((position, file.tell()))
        else:
            return  # stopped at ``end``: the points after it are not known
        if noting and found.st_size > STREAM_BYTES:  # read to the end
            _CHECKPOINTS[key] = checkpoints
            while len(_CHECKPOINTS) > _CHECKPOINT_FILES:
                _CHECKPOINTS.popitem(last=False)


def file_matches(path: Path, pattern: re.Pattern[str]) -> bool:
    """``pattern.search(read_text(path))``, a large file read in pieces of whole lines (a pattern matching
    within a line, anchored with re.M)."""
    try:
        if path.stat().st_size > STREAM_BYTES:
            carry = ""
            for piece in read_pieces(path):
                text = carry + piece
                cut = text.rfind("\n") + 1
                if pattern.search(text, 0, cut):
                    return True
                carry = text[_overlap(text, cut):]
            return pattern.search(carry) is not None
    except (OSError, UnicodeDecodeError):
        pass  # read_text says why
    return pattern.search(read_text(path)) is not None


def _overlap(text: str, cut: int) -> int:
    """Where to search again from, for a match cut off at ``cut`` (a line start): the readers' markers
    (``-- +goose``, ``-- migrate:up``) may span lines only through whitespace after a ``--``."""
    back = cut
    while back > 0:
        start = text.rfind("\n", 0, back - 1) + 1
        if text[start:back].strip() not in ("", "--"):
            break
        back = start
    return back
