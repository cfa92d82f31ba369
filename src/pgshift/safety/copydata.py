"""Row counts and digests of the table data in a pg_restore or pg_dump SQL script.

Both tools write each table's rows as a ``COPY schema.table (...) FROM stdin;`` line, the rows in
COPY text format one per line, and a ``\\.`` line. A data row can never be ``\\.`` itself (COPY
escapes a backslash as ``\\\\``), so the rows are found without interpreting them. Reading the
archive this way counts every table's rows in the same pass that proves the archive reads back.

The sha256 of a table's rows is order-dependent. It is used to compare an archive with a copy
restored from it: pg_restore loads each table with one COPY into an empty table, so a sequential
scan of the restored table (pg_dump turns synchronised scans off) returns the rows in the archive's
order.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pgshift.db.connect import mask_password
from pgshift.errors import BackupFailed
from pgshift.migrations.tree import parse
from pgshift.safety.tools import CLIENT_ENCODING, child_env, die_with_parent, python_encoding

TableKey = tuple[str, str]  # (schema, table)
_END = b"\n\\.\n"
_CHUNK = 1 << 20


@dataclass
class TableData:
    rows: int
    sha256: str | None  # None when the table was only counted


def is_copy_header(line: bytes) -> bool:
    """Whether a script line starts a table's rows (``COPY schema.table (...) FROM stdin;``)."""
    return line.startswith(b"COPY ") and line.rstrip().endswith(b" FROM stdin;")


def _python_encoding(line: bytes, current: str) -> str:
    """The script's encoding after a ``SET client_encoding`` line (the database's own, which
    is how pg_dump writes names and rows)."""
    match = CLIENT_ENCODING.match(line)
    return python_encoding(match.group(1), current) if match else current


def _copy_target(line: bytes, encoding: str = "utf-8") -> TableKey | None:
    """The table a ``COPY ... FROM stdin;`` line loads, from PostgreSQL's own parser."""
    try:
        relation = parse(line.decode(encoding, errors="replace"))[0]["CopyStmt"]["relation"]
        return (relation.get("schemaname") or "public", relation["relname"])
    except Exception:  # an unparsable header only means the table is reported as missing
        return None


class CopyScanner:
    """Counts (and, where ``hashed`` says so, digests) the rows of every COPY block in a script read
    piece by piece; ``found`` holds each finished block.

    Rows are counted with ``bytearray.count`` over whole buffers; the end of a block (``\\.`` on a
    line of its own) is found by looking for backslashes (memchr, rare in most COPY text) and only
    falls back to searching for the four-byte terminator where backslashes are common (NULLs)."""

    def __init__(self, hashed: Callable[[TableKey], bool]) -> None:
        self.hashed = hashed
        self.found: dict[TableKey, TableData] = {}
        self._table: TableKey | None = None
        self._inside = False
        self._at_start = False
        self._rows = 0
        self._digest: hashlib._Hash | None = None
        self._encoding = "utf-8"

    def _finish(self) -> None:
        if self._table is not None:
            self.found[self._table] = TableData(self._rows, self._digest.hexdigest() if self._digest else None)
        self._inside = False

    def scan(self, buf: bytearray, end: int, last: bool) -> int:
        """Read ``buf[:end]``; how many bytes were used (the rest must come again, followed by more).
        ``last``: nothing follows (an unfinished line or block is then dropped)."""
        pos = 0
        while True:
            if not self._inside:
                newline = buf.find(b"\n", pos, end)
                if newline < 0:
                    return end if last else pos
                line = bytes(buf[pos:newline])
                pos = newline + 1
                if line.startswith(b"SET client_encoding"):
                    self._encoding = _python_encoding(line, self._encoding)
                elif is_copy_header(line):
                    self._table = _copy_target(line, self._encoding)
                    self._inside, self._at_start, self._rows = True, True, 0
                    self._digest = hashlib.sha256() if self._table is not None and self.hashed(self._table) else None
                continue
            if self._at_start:
                if end - pos < 3 and not last:
                    return pos
                self._at_start = False
                if buf.startswith(b"\\.\n", pos, end) or buf[pos:end] == b"\\.":
                    self._finish()
                    pos += 3
                    continue
            terminator = _find_end(buf, pos, end)
            stop = terminator + 1 if terminator >= 0 else max(pos, end - (0 if last else len(_END) - 1))
            self._rows += buf.count(b"\n", pos, stop)
            if self._digest is not None:
                with memoryview(buf) as view:
                    self._digest.update(view[pos:stop])
            pos = stop
            if terminator < 0:
                return end if last else pos
            self._finish()
            pos = terminator + len(_END)


_MISSES = 16  # backslashes that end no block, per search, before searching for the terminator itself


def _find_end(buf: bytearray, pos: int, end: int) -> int:
    """Where ``\\n\\\\.\\n`` starts in ``buf[pos:end]``, or -1."""
    at = pos
    for _ in range(_MISSES):
        slash = buf.find(b"\\", at + 1, end)
        if slash < 0 or slash + 3 > end:
            return -1
        if buf[slash - 1] == 10 and buf[slash + 1] == 46 and buf[slash + 2] == 10:  # "\n" before, ".\n" after
            return slash - 1
        at = slash
    return buf.find(_END, at, end)


def read_copy_blocks(chunks: Iterable[bytes], hashed: Callable[[TableKey], bool]) -> dict[TableKey, TableData]:
    """Count (and, where ``hashed`` says so, digest) the rows of every COPY block in a script."""
    scanner = CopyScanner(hashed)
    buf = bytearray()
    for chunk in (*(c for c in chunks if c), b""):
        buf += chunk
        used = scanner.scan(buf, len(buf), not chunk)
        del buf[:used]
    return scanner.found


def _scan_pipe(fd: int, scanner: CopyScanner) -> None:
    """Feed a pipe to ``scanner`` through one reused buffer: no new 1 MB object per read."""
    with contextlib.suppress(OSError):  # a 1 MB pipe, not 64 kB: fewer switches to the tool (Linux)
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _CHUNK)
    buf = bytearray(_CHUNK)
    kept = 0  # bytes carried over from the last read, at the buffer's start
    while True:
        if len(buf) - kept < _CHUNK // 2:  # a long line outside the data (a function's body)
            buf.extend(bytes(_CHUNK))
        with memoryview(buf) as view, view[kept:] as free:
            got = os.readv(fd, [free])
        end = kept + got
        used = scanner.scan(buf, end, got == 0)
        if got == 0:
            return
        kept = end - used
        buf[:kept] = buf[used:end]


def _feed(source: Path, sink: IO[bytes], digest: hashlib._Hash | None, failed: list[OSError]) -> None:
    """Copy ``source`` into the tool's stdin, hashing every byte; a tool that stops reading (a
    damaged archive) does not stop the hash, which then tells a changed file from a bad one."""
    writing = True
    try:
        with source.open("rb") as src:
            while block := src.read(_CHUNK):
                if digest is not None:
                    digest.update(block)
                if writing:
                    try:
                        sink.write(block)
                    except OSError:  # BrokenPipeError: the tool exited; its stderr says why
                        writing = False
    except OSError as exc:
        failed.append(exc)
    finally:
        with contextlib.suppress(OSError):
            sink.close()


def tool_copy_data(
    argv: Sequence[str | bytes], env: dict[str, str], *, what: str,
    hashed: Callable[[TableKey], bool] = lambda _: False,
    stdin_file: Path | None = None, digest: hashlib._Hash | None = None,
    stdin_feed: Callable[[IO[bytes]], None] | None = None,
) -> dict[TableKey, TableData]:
    """Run pg_restore/pg_dump writing a SQL script to stdout and read its COPY blocks as they come;
    BackupFailed with the tool's (masked) stderr if it fails. With ``stdin_file`` the tool reads that
    file from its stdin, and ``digest`` hashes it in the same read (one pass over the archive);
    ``stdin_feed`` writes the tool's stdin itself (in a thread) and closes it."""
    with tempfile.TemporaryFile() as errors:
        try:
            stdin = subprocess.DEVNULL if stdin_file is None and stdin_feed is None else subprocess.PIPE
            proc = subprocess.Popen(argv, bufsize=0, stdin=stdin, stdout=subprocess.PIPE, stderr=errors,
                                    env=child_env(env), preexec_fn=die_with_parent())
        except OSError as exc:
            raise BackupFailed(f"{what}: could not run {os.fsdecode(argv[0])}: {exc}") from exc
        assert proc.stdout is not None
        feeder: threading.Thread | None = None
        unreadable: list[OSError] = []
        if stdin_feed is not None:
            assert proc.stdin is not None
            feeder = threading.Thread(target=stdin_feed, args=(proc.stdin,), daemon=True)
            feeder.start()
        elif stdin_file is not None:
            assert proc.stdin is not None
            feeder = threading.Thread(target=_feed, args=(stdin_file, proc.stdin, digest, unreadable), daemon=True)
            feeder.start()
        try:
            scanner = CopyScanner(hashed)
            _scan_pipe(proc.stdout.fileno(), scanner)
            found = scanner.found
        finally:
            proc.stdout.close()
            code = proc.wait()
            if feeder is not None:
                feeder.join()
        if unreadable:
            raise BackupFailed(f"{what}: {stdin_file} could not be read: {unreadable[0]}") from unreadable[0]
        if code != 0:
            errors.seek(0)
            detail = mask_password(errors.read().decode("utf-8", errors="replace").strip()[-2000:])
            raise BackupFailed(f"{what}: {Path(os.fsdecode(argv[0])).name} failed: {detail}")
    return found


def table_pattern(schema: str, name: str) -> str:
    """A pg_dump --table pattern matching exactly this table (quoted: no wildcards, exact case)."""
    def quote(part: str) -> str:
        return '"' + part.replace('"', '""') + '"'
    return f"{quote(schema)}.{quote(name)}"
