"""Statement splitting with PostgreSQL's own parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgshift.errors import SqlParseError
from pgshift.migrations import splitter
from pgshift.migrations.splitter import first_word, split_sql

TRICKY = """\
-- a comment; with a semicolon
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
  NEW.note := $inner$ it's; nested $inner$;
  RETURN NEW;
END;
$body$;
/* block ; comment /* nested ; */ */
CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql
BEGIN ATOMIC
  SELECT a + b;
  SELECT a;
END;
SELECT 'semi;colon', E'esc\\'; still', "odd;name" FROM t;
"""


def test_tricky_bodies_survive_and_keep_their_positions() -> None:
    statements = split_sql(TRICKY, file="m.sql")
    assert len(statements) == 3
    first, second, third = statements
    assert first.sql.startswith("CREATE FUNCTION touch()") and first.sql.endswith("$body$")
    assert "$inner$ it's; nested $inner$" in first.sql
    assert (first.line, first.column) == (2, 1)
    assert second.sql.startswith("CREATE FUNCTION add") and second.sql.endswith("END")
    assert "SELECT a + b;\n  SELECT a;" in second.sql
    assert second.line == 9
    assert third.line == 14 and third.sql.endswith('"odd;name" FROM t')
    assert [s.index for s in statements] == [0, 1, 2]
    assert first.where == "m.sql:2:1"


def test_base_line_offsets_positions() -> None:
    [stmt] = split_sql("\n\n   SELECT 1;", file="f.sql", base_line=10)
    assert (stmt.line, stmt.column) == (12, 4)


def test_parse_error_names_file_line_and_column() -> None:
    with pytest.raises(SqlParseError) as caught:
        split_sql("SELECT 1;\nSELECT * FORM t;\n", file="bad.sql", base_line=5)
    assert caught.value.file == "bad.sql"
    assert caught.value.line == 6
    assert caught.value.column == 10  # the F of FORM
    assert str(caught.value).startswith("bad.sql:6:10: syntax error at or near")


def test_empty_and_comment_only_text_has_no_statements() -> None:
    assert split_sql("  \n-- nothing\n/* here */\n") == []


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
literals = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20)


@given(st.lists(st.tuples(names, literals), min_size=1, max_size=8))
def test_any_sequence_of_statements_splits_back(items: list[tuple[str, str]]) -> None:
    """Literals with quotes, semicolons, dollar signs and newlines never split a statement."""
    sources = []
    for name, literal in items:
        tag = "$q$" if "$q$" not in literal else "$other$"
        sources.append(f"SELECT {tag}{literal}{tag} AS {name}, '{literal.replace(chr(39), chr(39) * 2)}'")
    text = ";\n-- sep ;\n".join(sources) + ";"
    statements = split_sql(text)
    assert [s.sql for s in statements] == sources


def test_an_error_at_the_end_of_the_input_names_the_last_line() -> None:
    with pytest.raises(SqlParseError) as caught:
        split_sql("SELECT 1;\nCREATE TABLE t (\n", file="cut.sql")
    assert (caught.value.file, caught.value.line) == ("cut.sql", 3)
    assert "at end of input" in caught.value.message


PIECES = [
    "CREATE TABLE t{i} (id bigint PRIMARY KEY, note text);\n",
    "INSERT INTO t{i} VALUES (1, 'semi;\ncolon;\n');\n",
    "CREATE FUNCTION f{i}() RETURNS int LANGUAGE plpgsql AS $body$\nBEGIN\n  RETURN 1;\nEND;\n$body$;\n",
    "/* a comment;\nwith a cut point; /* nested;\n */ */ ALTER TABLE t{i} ADD COLUMN c text;\n",
    "-- trailing comment;\nUPDATE t{i} SET note = '\u00fcn\u00efcode' WHERE id = 1;\n",
    'CREATE INDEX "ix;\n{i}" ON t{i} (note);\n',
    "CREATE FUNCTION g{i}() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n  SELECT 2;\nEND;\n",
    "SELECT 1 FORM t{i};\n",  # a syntax error
    "SELECT 'unterminated;\n",
]


def _outcome(text: str) -> object:
    try:
        return [(s.sql, s.line, s.column, s.index) for s in split_sql(text, file="x.sql", base_line=3)]
    except SqlParseError as exc:
        return (exc.line, exc.column, exc.message)


@settings(max_examples=80, deadline=None)
@given(order=st.lists(st.integers(0, len(PIECES) - 1), min_size=1, max_size=25), chunk=st.integers(1, 300))
def test_chunks_never_change_statements_positions_or_errors(order: list[int], chunk: int) -> None:
    """Large texts are split chunk by chunk; a cut inside a string, a body or a comment, or a
    statement with an error, must give what one parse of the whole text gives."""
    text = "".join(PIECES[p].format(i=i) for i, p in enumerate(order))
    whole = _outcome(text)
    original = splitter.CHUNK_CHARS
    splitter.CHUNK_CHARS = chunk
    try:
        assert _outcome(text) == whole
    finally:
        splitter.CHUNK_CHARS = original


@pytest.mark.parametrize(("sql", "word"), [
    ("insert into t values (1)", "INSERT"),
    ("  -- note\n/* a /* nested */ b */\tBEGIN", "BEGIN"),
    ("commit;", "COMMIT"),
    ("(SELECT 1)", None),
    ("cr\u00e9ate table", None),
])
def test_first_word_skips_comments(sql: str, word: str | None) -> None:
    assert first_word(sql) == word
