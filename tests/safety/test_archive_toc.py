"""The custom-format TOC reader of the backup's read-back (pgshift.safety.follow) on archives laid out
byte by byte for each version it knows (1.12 to 1.16: pg_dump 9.6 to 17) and each integer and offset
width pg_dump may write. This machine's pg_dump writes one version and width (the real archive is in
test_backup.py); the others decide only where each field lies, so they are built here."""

from __future__ import annotations

import itertools
import zlib
from pathlib import Path

import pytest

from pgshift.safety import follow
from pgshift.safety.follow import ArchiveFollower, FollowedRead, Toc, UnknownArchive, _masked, check_final, parse_toc


def _archive(version: tuple[int, int, int] = (1, 14, 0), *, int_size: int = 4, off_size: int = 8,
             fmt: int = 1, offsets: tuple[int | None, ...] = (4242, None, 77)) -> tuple[bytes, Toc]:
    """An archive's header and TOC as pg_backup_archiver.c writes them, one entry per offset (None: an
    entry whose offset is not set yet, as in the TOC pg_dump writes first), and where parse_toc must
    find each part."""

    width, offset_width = int_size or 1, off_size or 1  # a header claiming 0 is refused before the body

    def number(value: int) -> bytes:  # WriteInt: a sign byte, then int_size bytes little-endian
        return bytes([1 if value < 0 else 0]) + abs(value).to_bytes(width, "little")

    def text(value: bytes | None) -> bytes:  # WriteStr: its length (-1 for NULL), then its bytes
        return number(-1) if value is None else number(len(value)) + value

    out = b"PGDMP" + bytes([*version, int_size, off_size, fmt])
    out += bytes([1]) if version >= (1, 15, 0) else number(-1)  # compression: algorithm / level
    out += b"".join(number(v) for v in (5, 4, 3, 2, 1, 124, 0))  # creation time
    out += text(b"app") + text(b"15.8") + text(b"15.8 (pg_dump)")
    out += number(len(offsets))
    fields, set_offsets = [], []
    for n, offset in enumerate(offsets):
        out += number(n + 1) + number(1) + text(b"16385") + text(b"0") + text(f"table_{n}".encode())
        out += text(b"TABLE DATA") + number(3)
        out += text(b"") + text(None) + text(b"COPY t FROM stdin;\n") + text(b"public") + text(b"") + text(b"heap")
        if version >= (1, 16, 0):
            out += number(ord("r"))  # relkind
        out += text(b"owner_role") + text(b"false")
        out += text(b"7") + text(b"12") + text(None)  # two dependencies, then the NULL that ends them
        start = len(out)
        out += bytes([1 if offset is None else 2]) + (offset or 0).to_bytes(offset_width, "little")
        fields.append((start, len(out)))
        if offset is not None:
            set_offsets.append(offset)
    return out, Toc(len(out), tuple(fields), tuple(set_offsets))


@pytest.mark.parametrize("version", [(1, 12, 0), (1, 13, 0), (1, 14, 0), (1, 15, 0), (1, 16, 0)],
                         ids=lambda v: ".".join(map(str, v)))
def test_each_known_version_s_toc_is_read_to_its_end(version: tuple[int, int, int]) -> None:
    data, expected = _archive(version)
    assert parse_toc(data + b"data follows") == expected


@pytest.mark.parametrize(("int_size", "off_size"), [(1, 1), (4, 8), (8, 16)])
def test_every_integer_and_offset_width_pg_dump_may_write_is_read(int_size: int, off_size: int) -> None:
    data, expected = _archive(int_size=int_size, off_size=off_size, offsets=(200, None, 17))
    assert parse_toc(data) == expected


@pytest.mark.parametrize(("why", "changes"), [
    ("a version after 1.16", {"version": (1, 17, 0)}), ("a version before 1.12", {"version": (1, 11, 0)}),
    ("integers wider than 8 bytes", {"int_size": 9}), ("no integer width", {"int_size": 0}),
    ("offsets wider than 16 bytes", {"off_size": 17}), ("no offset width", {"off_size": 0}),
    ("the directory or tar format", {"fmt": 3})])
def test_what_the_reader_does_not_know_is_refused_not_guessed(why: str, changes: dict[str, object]) -> None:
    data, _ = _archive(**changes, offsets=(5, None))  # type: ignore[arg-type]
    with pytest.raises(UnknownArchive):
        parse_toc(data)


def test_the_masked_toc_is_the_toc_less_its_offset_fields_only() -> None:
    """What check_final compares between the TOC the follower read and the one pg_dump rewrote last."""
    first, first_toc = _archive(offsets=(None, None, None))
    final, final_toc = _archive(offsets=(4242, 999, 77))
    assert len(first) == len(final) and first != final
    assert _masked(first, first_toc) == _masked(final, final_toc)
    kept = b"".join(final[end:start] for (_, end), (start, _) in
                    zip(((0, 0), *final_toc.offset_fields), (*final_toc.offset_fields, (final_toc.end, 0)),
                        strict=True))
    assert _masked(final, final_toc) == kept and kept.startswith(b"PGDMP")
    renamed = final.replace(b"table_1", b"table_9")
    assert _masked(renamed, parse_toc(renamed)) != _masked(final, final_toc)


def _written(tmp_path: Path, first_offsets: tuple[int | None, ...], final_offsets: tuple[int | None, ...],
             tail: bytes = b"the data blocks", final_tail: bytes | None = None) -> tuple[Path, FollowedRead]:
    """The follower's read of an archive whose TOC was first written with ``first_offsets``, and the
    finished file pg_dump leaves (its TOC rewritten with ``final_offsets``)."""
    head, toc = _archive(offsets=first_offsets)
    final, _ = _archive(offsets=final_offsets)
    path = tmp_path / "dump.pgdump"
    path.write_bytes(final + (tail if final_tail is None else final_tail))
    return path, FollowedRead({}, None, head, toc, zlib.crc32(tail), len(head) + len(tail))


def test_the_finished_archive_is_proved_the_one_read_back_when_only_its_offsets_were_filled_in(
        tmp_path: Path) -> None:
    end = _archive()[1].end
    path, read = _written(tmp_path, (None, None, None), (end, None, end + 9))
    check = check_final(path, read)
    assert check.same and check.why == ""
    import hashlib
    assert check.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("case", "why"), [
    ("first block elsewhere", "its first data block is not where its table of contents ends"),
    ("data changed", "its data changed after it was read back"),
    ("entry renamed", "its table of contents changed beyond the data offsets"),
    ("longer", "were read back"),
])
def test_a_finished_archive_that_is_not_the_one_read_back_is_not_taken_for_it(tmp_path: Path, case: str,
                                                                              why: str) -> None:
    end = _archive()[1].end
    offsets = {"first block elsewhere": (end + 1, None, end + 9)}.get(case, (end, None, end + 9))
    final_tail = {"data changed": b"the data blockz", "longer": b"the data blocks!"}.get(case)
    path, read = _written(tmp_path, (None, None, None), offsets, final_tail=final_tail)
    if case == "entry renamed":
        path.write_bytes(path.read_bytes().replace(b"table_1", b"table_9"))
    check = check_final(path, read)
    assert not check.same and why in check.why, check


def _taking(monkeypatch: pytest.MonkeyPatch, data: bytes, block: int) -> tuple[ArchiveFollower, list[int]]:
    """The follower's bookkeeping fed ``data`` in reads of ``block`` bytes (no pg_dump, no pg_restore:
    _take is what the feeding thread calls with each read), and the head length of each parse tried."""
    tries: list[int] = []

    def counted(buf: bytes | bytearray) -> Toc:
        tries.append(len(buf))
        return parse_toc(buf)

    monkeypatch.setattr(follow, "parse_toc", counted)
    follower = ArchiveFollower.__new__(ArchiveFollower)
    follower._head, follower._toc, follower._parsable, follower._next_try = bytearray(), None, True, 0
    follower._crc = follower._size = 0
    for start in range(0, len(data), block):
        follower._take(data[start:start + block])
    return follower, tries


def test_a_toc_arriving_in_small_reads_is_parsed_once_whole_and_tried_a_logarithmic_number_of_times(
        monkeypatch: pytest.MonkeyPatch) -> None:
    data, toc = _archive(offsets=tuple(None for _ in range(200)))
    tail = b"rows " * 20000  # more than the TOC: the head doubles past its end while rows arrive
    follower, tries = _taking(monkeypatch, data + tail, 64)
    assert follower._toc == toc and bytes(follower._head) == data  # the head kept is the TOC, nothing after
    assert follower._crc == zlib.crc32(tail) and follower._size == len(data) + len(tail)
    # Each try waits for the head to double: about log2(TOC / first read) tries, not one per read.
    assert len(tries) <= (len(data) // 64).bit_length() + 1, tries
    assert all(b >= 2 * a for a, b in itertools.pairwise(tries)), tries


def test_an_archive_the_reader_does_not_know_is_not_held_while_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = _archive(version=(1, 17, 0))
    follower, tries = _taking(monkeypatch, data + b"rows " * 2000, 64)
    assert follower._toc is None and not follower._parsable and len(tries) == 1
    assert len(follower._head) == 64  # the first read only: the rest of the archive is not kept in memory
