"""Large texts are split in chunks and their trees parsed in batches by a helper thread; the result
must not depend on where the chunks are cut, even when a cut falls inside a string, a dollar-quoted
body or a comment."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgshift.lint import engine
from pgshift.migrations import splitter

PIECES = [
    "CREATE TABLE t{i} (id bigint PRIMARY KEY, note text);\n",
    "INSERT INTO t{i} VALUES (1, 'semi;\ncolon;\n');\n",
    "CREATE FUNCTION f{i}() RETURNS int LANGUAGE sql AS $body$\nSELECT 1;\nSELECT 2;\n$body$;\n",
    "/* a comment;\nwith a cut point; */ ALTER TABLE t{i} ADD COLUMN c text;\n",
    "-- trailing comment;\nUPDATE t{i} SET note = 'ünïcode' WHERE id = 1;\n",
    'CREATE INDEX "ix;\n{i}" ON t{i} (note);\n',
]


def _text(order: list[int]) -> str:
    return "".join(PIECES[p].format(i=i) for i, p in enumerate(order))


def _no_locations(tree: object) -> object:
    """Token offsets inside a tree count from the start of the parsed text (a chunk or the whole
    file); the linter never reads them."""
    if isinstance(tree, dict):
        return {k: _no_locations(v) for k, v in tree.items() if not k.endswith("location")}
    if isinstance(tree, list):
        return [_no_locations(v) for v in tree]
    return tree


def _shape(parsed: list[engine.Parsed]) -> list[tuple[str, int, int, object]]:
    return [(p.statement.sql, p.statement.line, p.statement.column, _no_locations(p.node)) for p in parsed]


@settings(max_examples=60, deadline=None)
@given(order=st.lists(st.integers(0, len(PIECES) - 1), min_size=1, max_size=30),
       chunk=st.integers(1, 400))
def test_chunking_never_changes_the_statements(order: list[int], chunk: int) -> None:
    text = _text(order)
    whole = _shape(engine.parse_text(text, "x.sql"))
    original = engine._CHUNK_BYTES, splitter.CHUNK_CHARS
    engine._CHUNK_BYTES = splitter.CHUNK_CHARS = chunk
    try:
        chunked = _shape(engine.parse_text(text, "x.sql"))
    finally:
        engine._CHUNK_BYTES, splitter.CHUNK_CHARS = original
    assert chunked == whole
    assert len(whole) == len(order)


def test_a_parse_error_in_a_later_chunk_is_still_reported_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_CHUNK_BYTES", 10)
    monkeypatch.setattr(splitter, "CHUNK_CHARS", 10)
    text = _text([0, 1, 2]) + "ALTER TABLE oops ADD;\n" + _text([3, 4])
    parsed = engine.parse_text(text, "x.sql")
    errors = [p.error for p in parsed if p.error]
    assert len(errors) == 1 and errors[0].line == text[: text.index("ALTER TABLE oops")].count("\n") + 1
    assert len([p for p in parsed if p.node is not None]) == 5
