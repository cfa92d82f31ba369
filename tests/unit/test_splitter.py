"""Statement splitting with PostgreSQL's own parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgshift.errors import SqlParseError
from pgshift.migrations.splitter import split_sql

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
