"""Read a custom-format archive back while pg_dump is still writing it (#17).

pg_dump -Fc writes its header and table of contents (TOC), then every table's data, and at the
end seeks back and writes the TOC again with each data block's file offset filled in. The
follower reads the growing file and feeds it to ``pg_restore --file=-`` (whose COPY blocks are
counted as in every other read of the archive), so the read-back overlaps the dump instead of
following it. pg_restore reads a pipe sequentially, so the offsets it has not seen yet do not
matter to it.

Once pg_dump has finished, one pass over the final file takes its sha256 for the manifest and
proves that the file is the one that was read back: every byte after the TOC is the same (a
checksum of that part taken in both reads), and the TOC differs only in its data offsets (the
TOC is parsed just far enough to know where each entry and offset lies). Anything else, such as
an archive version this parser does not know, leaves the follower's read unused: the caller then
reads the finished archive through pg_restore as before, so nothing is proved less.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pgshift.errors import BackupFailed
from pgshift.safety.copydata import TableData, TableKey, tool_copy_data
from pgshift.safety.tools import Tool, child_env, die_with_parent

_CHUNK = 1 << 20
_POLL_SECONDS = 0.02
_MAX_POLL_SECONDS = 0.25
_BATCH = 256 << 10
_MAX_HEAD = 64 << 20  # a TOC larger than this is not parsed: the finished file is read instead
_K_OFFSET_POS_SET = 2


class _NeedMore(Exception):
    """The bytes so far end inside the header or TOC."""


class UnknownArchive(Exception):
    """Not a custom-format archive of a version whose TOC layout is known here."""


def _version(vmaj: int, vmin: int, vrev: int) -> int:
    return (vmaj * 256 + vmin) * 256 + vrev


_V1_12, _V1_15, _V1_16, _V1_17 = _version(1, 12, 0), _version(1, 15, 0), _version(1, 16, 0), _version(1, 17, 0)


@dataclass(frozen=True)
class Toc:
    """Where a custom-format archive's TOC ends, where its data offsets lie and what they say."""

    end: int
    offset_fields: tuple[tuple[int, int], ...]  # (start, end) of each entry's offset (flag byte included)
    data_offsets: tuple[int, ...]  # the offsets that are set (pg_dump's final TOC)


class _Reader:
    def __init__(self, buf: bytes | bytearray, int_size: int = 4) -> None:
        self.buf, self.pos, self.int_size = buf, 0, int_size

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise _NeedMore
        part = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return part

    def byte(self) -> int:
        return self.take(1)[0]

    def int(self) -> int:  # a sign byte, then int_size bytes little-endian (pg_backup_archiver.c WriteInt)
        sign = self.byte()
        value = int.from_bytes(self.take(self.int_size), "little")
        return -value if sign else value

    def str(self) -> None:
        length = self.int()
        if length > 0:
            self.take(length)


def parse_toc(buf: bytes | bytearray) -> Toc:
    """Walk a custom-format archive's header and TOC (versions 1.12 to 1.16: pg_dump 9.6 to 17).

    Raises _NeedMore when ``buf`` ends inside them, UnknownArchive for anything else."""
    r = _Reader(buf)
    if r.take(5) != b"PGDMP":
        raise UnknownArchive("not a pg_dump archive")
    vmaj, vmin = r.byte(), r.byte()
    version = _version(vmaj, vmin, r.byte())
    if not _V1_12 <= version < _V1_17:
        raise UnknownArchive(f"archive version {vmaj}.{vmin}")
    r.int_size, off_size, fmt = r.byte(), r.byte(), r.byte()
    if fmt != 1 or not 1 <= r.int_size <= 8 or not 1 <= off_size <= 16:  # archCustom
        raise UnknownArchive("not a custom-format archive")
    if version >= _V1_15:
        r.byte()  # compression algorithm
    else:
        r.int()  # compression level
    for _ in range(7):  # creation time: sec, min, hour, mday, mon, year, isdst
        r.int()
    for _ in range(3):  # database name, server version, pg_dump version
        r.str()
    count = r.int()
    if count < 0:
        raise UnknownArchive("negative TOC entry count")
    fields: list[tuple[int, int]] = []
    offsets: list[int] = []
    for _ in range(count):
        r.int()  # dump id
        r.int()  # had dumper
        for _ in range(4):  # tableoid, oid, tag, desc
            r.str()
        r.int()  # section
        for _ in range(6):  # defn, dropStmt, copyStmt, namespace, tablespace, tableam
            r.str()
        if version >= _V1_16:
            r.int()  # relkind
        r.str()  # owner
        r.str()  # "false" (WITH OIDS)
        while True:  # dependencies, ended by a NULL string
            length = r.int()
            if length < 0:
                break
            r.take(length)
        start = r.pos
        flag = r.byte()
        value = int.from_bytes(r.take(off_size), "little")
        fields.append((start, r.pos))
        if flag == _K_OFFSET_POS_SET:
            offsets.append(value)
    return Toc(r.pos, tuple(fields), tuple(offsets))


def _masked(head: bytes | bytearray, toc: Toc) -> bytes:
    """The TOC bytes without its offset fields (the only part pg_dump rewrites)."""
    parts, pos = [], 0
    for start, end in toc.offset_fields:
        parts.append(bytes(head[pos:start]))
        pos = end
    parts.append(bytes(head[pos:toc.end]))
    return b"".join(parts)


@dataclass(frozen=True)
class FollowedRead:
    """What the follower read while pg_dump wrote: the rows pg_restore decoded, the TOC as first
    written, and a checksum and length of everything after it."""

    tables: dict[TableKey, TableData] | None
    failure: str | None
    head: bytes | None  # header + TOC as first written; None when it could not be parsed
    toc: Toc | None
    tail_crc: int
    size: int


class ArchiveFollower:
    """Feeds ``path`` to pg_restore as pg_dump writes it; ``finish()`` once pg_dump has exited."""

    def __init__(self, path: Path, tool: Tool, hashed: Callable[[TableKey], bool] = lambda _: False) -> None:
        self.path, self.tool, self.hashed = path, tool, hashed
        self._dump_done = threading.Event()
        self._stop = threading.Event()
        self._head = bytearray()
        self._toc: Toc | None = None
        self._parsable = True
        self._next_try = 0
        self._crc = 0
        self._size = 0
        self._tables: dict[TableKey, TableData] | None = None
        self._failure: str | None = None
        self._thread = threading.Thread(target=self._run, name="pgshift-archive-follower", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._tables = tool_copy_data([str(self.tool.path), "--file=-"], {},
                                          what=f"the archive {self.path} does not read back", stdin_feed=self._feed,
                                          hashed=self.hashed)
        except BackupFailed as exc:
            self._failure = exc.message

    def _feed(self, sink: IO[bytes]) -> None:
        writing = True
        try:
            with self._open() as src:
                started = time.monotonic()
                while not self._stop.is_set():
                    done = self._dump_done.is_set()  # before the read: then what it reads is all there is
                    size = os.fstat(src.fileno()).st_size
                    if not done and size - src.tell() < _BATCH:
                        # Read in batches, not pg_dump's every write: fewer wake-ups of pg_restore and of
                        # this thread on a machine whose cores pg_dump and its server process already use.
                        # Sleep about as long as the file takes to grow by the rest of a batch (pg_dump's
                        # exit still wakes it at once).
                        rate = size / max(time.monotonic() - started, 1e-3)
                        wait = (_BATCH - (size - src.tell())) / rate if rate > 0 else _POLL_SECONDS
                        self._dump_done.wait(min(max(wait, _POLL_SECONDS), _MAX_POLL_SECONDS))
                        continue
                    block = src.read(_CHUNK)
                    if not block:
                        if done:
                            return
                        continue
                    self._take(block)
                    if writing:
                        try:
                            sink.write(block)
                        except OSError:  # pg_restore stopped reading (a damaged archive): its stderr says why
                            writing = False
        except OSError as exc:
            self._failure = f"the archive {self.path} could not be read while it was written: {exc}"
        finally:
            with contextlib.suppress(OSError):
                sink.close()

    def _open(self) -> IO[bytes]:
        while True:  # pg_dump creates the file once it has connected
            try:
                return self.path.open("rb")
            except FileNotFoundError:
                if self._dump_done.is_set() or self._stop.is_set():
                    raise
                self._dump_done.wait(_POLL_SECONDS)

    def _take(self, block: bytes) -> None:
        self._size += len(block)
        if self._toc is not None:
            self._crc = zlib.crc32(block, self._crc)
            return
        if not self._parsable:
            return
        self._head += block
        # Parse again only once the head has doubled since the last try: a large TOC arriving in small
        # reads costs linear time, not quadratic.
        if len(self._head) < self._next_try:
            return
        try:
            toc = parse_toc(self._head)
        except _NeedMore:
            self._parsable = len(self._head) <= _MAX_HEAD
            self._next_try = 2 * len(self._head)
            return
        except UnknownArchive:
            self._parsable = False
            return
        self._toc = toc
        self._crc = zlib.crc32(memoryview(self._head)[toc.end:])
        del self._head[toc.end:]

    def dump_finished(self) -> None:
        """pg_dump has exited successfully: read to the end of the file and let pg_restore finish."""
        self._dump_done.set()

    def abort(self) -> None:
        self._stop.set()
        self._dump_done.set()
        self._thread.join(timeout=30)

    def finish(self) -> FollowedRead:
        self.dump_finished()
        self._thread.join()
        if self._toc is None and self._parsable and self._head:
            with contextlib.suppress(_NeedMore, UnknownArchive):  # a small archive: the TOC is all there is
                self._toc = parse_toc(self._head)
                self._crc = zlib.crc32(memoryview(self._head)[self._toc.end:])
                del self._head[self._toc.end:]
        toc = self._toc
        return FollowedRead(self._tables, self._failure, bytes(self._head) if toc else None, toc, self._crc,
                            self._size)


@dataclass(frozen=True)
class FinalCheck:
    sha256: str
    same: bool  # the finished file is the one that was read back (offsets aside)
    why: str = ""


def check_final(path: Path, read: FollowedRead) -> FinalCheck:
    """One pass over the finished archive: its sha256, and whether it is the archive the follower
    read back except for the data offsets pg_dump wrote into the TOC at the end."""
    import hashlib

    digest = hashlib.sha256()
    crc = 0
    with path.open("rb") as src:
        head = src.read(read.toc.end) if read.toc is not None else b""
        digest.update(head)
        while block := src.read(_CHUNK):
            digest.update(block)
            crc = zlib.crc32(block, crc)
        size = src.tell()
    sha = digest.hexdigest()
    if read.toc is None or read.head is None:
        return FinalCheck(sha, False, "its table of contents could not be parsed while it was written")
    if size != read.size:
        return FinalCheck(sha, False, f"it is {size} bytes, {read.size} were read back")
    try:
        final = parse_toc(head)
    except (_NeedMore, UnknownArchive):
        return FinalCheck(sha, False, "its final table of contents could not be parsed")
    if final.end != read.toc.end or final.offset_fields != read.toc.offset_fields \
            or _masked(head, final) != _masked(read.head, read.toc):
        return FinalCheck(sha, False, "its table of contents changed beyond the data offsets")
    if final.data_offsets and min(final.data_offsets) != final.end:
        return FinalCheck(sha, False, "its first data block is not where its table of contents ends")
    if crc != read.tail_crc:
        return FinalCheck(sha, False, "its data changed after it was read back")
    return FinalCheck(sha, True)


class TocListing:
    """``pg_restore --list`` of the finished archive, started at once so that it runs beside the final
    pass over the file: pg_restore reads the TOC with the data offsets pg_dump wrote last."""

    def __init__(self, path: Path, tool: Tool) -> None:
        self.proc = subprocess.Popen([str(tool.path), "--list", str(path)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env({}),
                                     preexec_fn=die_with_parent())

    def succeeded(self) -> bool:
        return self.proc.wait() == 0
