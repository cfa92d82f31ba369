"""Reading COPY blocks out of a pg_restore/pg_dump script, whatever the pipe's chunk boundaries."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pgshift.safety.copydata import read_copy_blocks, table_pattern, tool_copy_data

ROWS_A = [b"1\tone", b"2\t\\\\.", b"3\t\\N"]  # the second row is the value "\." (escaped), not an end
SCRIPT = b"".join([
    b"--\n-- PostgreSQL database dump\n--\nSET statement_timeout = 0;\n",
    b"COPY public.a (id, v) FROM stdin;\n", *(r + b"\n" for r in ROWS_A), b"\\.\n\n\n",
    b"COPY public.empty (id) FROM stdin;\n\\.\n\n",
    b'COPY audit."Weird ""Name""" FROM stdin;\n', b"\n\n", b"\\.\n",  # two rows of a table without columns
    b"SELECT pg_catalog.setval('public.a_id_seq', 3, true);\n",
])


def _expected() -> dict[tuple[str, str], tuple[int, str]]:
    return {
        ("public", "a"): (3, hashlib.sha256(b"".join(r + b"\n" for r in ROWS_A)).hexdigest()),
        ("public", "empty"): (0, hashlib.sha256(b"").hexdigest()),
        ("audit", 'Weird "Name"'): (2, hashlib.sha256(b"\n\n").hexdigest()),
    }


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(SCRIPT)), max_size=12))
def test_blocks_are_found_across_any_chunk_boundaries(cuts: list[int]) -> None:
    edges = [0, *sorted(cuts), len(SCRIPT)]
    chunks = [SCRIPT[a:b] for a, b in itertools.pairwise(edges)]
    found = read_copy_blocks(chunks, lambda _: True)
    assert {k: (v.rows, v.sha256) for k, v in found.items()} == _expected()


def test_only_requested_tables_are_hashed() -> None:
    found = read_copy_blocks([SCRIPT], lambda key: key == ("public", "a"))
    assert found[("public", "a")].sha256 is not None
    assert found[("public", "empty")].sha256 is None and found[("public", "empty")].rows == 0


def test_a_block_cut_short_is_not_reported_as_complete() -> None:
    cut = SCRIPT.index(b"2\t")
    found = read_copy_blocks([SCRIPT[:cut]], lambda _: False)
    assert ("public", "a") not in found


def test_table_pattern_matches_exactly() -> None:
    assert table_pattern("public", 'We*ird "x"') == '"public"."We*ird ""x"""'


# Many backslashes (NULLs, escapes) between block ends: the search for the end gives up on looking at
# each backslash and searches for the terminator itself; a value ending in "\." is never an end.
NULLS = [b"%d\t\\N\t\\\\." % i for i in range(40)]
NULL_SCRIPT = b"".join([b"COPY public.n (id, a, b) FROM stdin;\n", *(r + b"\n" for r in NULLS), b"\\.\n",
                        b"COPY public.m (id) FROM stdin;\n\\N\n\\.\n"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(NULL_SCRIPT)), max_size=8))
def test_blocks_full_of_backslashes_end_where_the_terminator_is(cuts: list[int]) -> None:
    edges = [0, *sorted(cuts), len(NULL_SCRIPT)]
    found = read_copy_blocks([NULL_SCRIPT[a:b] for a, b in itertools.pairwise(edges)], lambda _: True)
    assert {k: (v.rows, v.sha256) for k, v in found.items()} == {
        ("public", "n"): (40, hashlib.sha256(b"".join(r + b"\n" for r in NULLS)).hexdigest()),
        ("public", "m"): (1, hashlib.sha256(b"\\N\n").hexdigest())}


def test_a_tool_s_output_is_read_through_lines_longer_than_the_buffer(tmp_path: Path) -> None:
    # A function body of 3 MB before the data: the pipe's reused buffer grows to hold the line.
    script = tmp_path / "script.sql"
    script.write_bytes(b"CREATE FUNCTION f() RETURNS text AS $$" + b"x" * (3 << 20) + b"$$ LANGUAGE sql;\n"
                       + SCRIPT + b"1\n" * 300_000)
    found = tool_copy_data(["cat", str(script)], {}, what="reading", hashed=lambda _: True)
    assert {k: (v.rows, v.sha256) for k, v in found.items()} == _expected()
