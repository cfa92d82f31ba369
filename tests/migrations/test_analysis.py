"""Which tables a statement touches: the INSERT shortcut (parse the head up to VALUES) gives what a
parse of the whole statement gives, and steps aside whenever it cannot be sure."""

from __future__ import annotations

from typing import Any

import pytest

from pgshift.migrations import analysis, tree
from pgshift.migrations.analysis import analyse, changed_tables, named_tables

T, OTHER = (None, "t"), (None, "o")

CASES: list[tuple[str, set[Any], set[Any], bool]] = [
    # sql, changed, named, parsed only up to VALUES
    ("INSERT INTO t VALUES (1)", {T}, {T}, True),
    ("insert into s.t (a, b) values (1, 'x'), (2, 'y')", {("s", "t")}, {("s", "t")}, True),
    ("INSERT INTO t(a)VALUES(1)", {T}, {T}, True),
    ("INSERT INTO t -- c\n VALUES (1)", {T}, {T}, True),
    ("INSERT INTO t AS x (a) OVERRIDING SYSTEM VALUE VALUES (1) ON CONFLICT (a) DO UPDATE SET a = excluded.a "
     "RETURNING *", {T}, {T}, True),
    ("INSERT INTO t VALUES ('a;b', E'x\\'VALUES', $$ FROM o $$)", {T}, {T}, True),
    # A subquery in the rows (or RETURNING) names another table: the whole statement is read.
    ("INSERT INTO t (a) VALUES ((SELECT max(id) FROM o))", {T}, {T, OTHER}, False),
    ("INSERT INTO t VALUES ((TABLE o))", {T}, {T, OTHER}, False),
    ("INSERT INTO t VALUES (1) RETURNING (SELECT 1 FROM o)", {T}, {T, OTHER}, False),
    ("INSERT INTO t VALUES (EXISTS (SELECT FROM o))", {T}, {T, OTHER}, False),
    # A first VALUES that is not the INSERT's own leaves a head that does not parse to one NULL row.
    ("INSERT INTO t SELECT 1 -- VALUES\n FROM o", {T}, {T, OTHER}, False),
    ("INSERT INTO t /* VALUES */ VALUES (1)", {T}, {T}, False),
    ('INSERT INTO "my VALUES" VALUES (1)', {(None, "my VALUES")}, {(None, "my VALUES")}, False),
    ("INSERT INTO t SELECT 'VALUES' FROM o", {T}, {T, OTHER}, False),
    ("INSERT INTO t SELECT $$VALUES$$ FROM o", {T}, {T, OTHER}, False),
    ("INSERT INTO t SELECT * FROM (VALUES (1)) v", {T}, {T}, False),
    ("INSERT INTO t SELECT x AS values FROM o", {T}, {T, OTHER}, False),
    ("INSERT INTO t DEFAULT VALUES", {T}, {T}, False),
    ("WITH w AS (SELECT 1 FROM o) INSERT INTO t SELECT * FROM w", {T}, {T, OTHER, (None, "w")}, False),
    # Other statements are parsed whole.
    ("UPDATE t SET a = 1 FROM o", {T}, {T, OTHER}, False),
    ("VACUUM FULL t", {T}, {T}, False),
    ("SELEC 1", set(), set(), False),
]


@pytest.mark.parametrize(("sql", "changed", "named", "head_only"), CASES)
def test_insert_targets_come_from_the_head_only_when_that_is_safe(
    sql: str, changed: set[Any], named: set[Any], head_only: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    real = tree.parse

    def counting(text: str) -> Any:
        parsed.append(text)
        return real(text)

    monkeypatch.setattr(tree, "parse", counting)
    analysis.analyse_all.cache_clear()  # facts are remembered per text
    assert changed_tables(sql)[0] == changed
    assert named_tables(sql) == named
    assert (sql not in parsed) == head_only, parsed
    # The same answer as from the statement's whole tree.
    monkeypatch.setattr(analysis, "_insert_head", lambda _sql: None)
    analysis.analyse_all.cache_clear()
    assert (changed_tables(sql)[0], named_tables(sql)) == (changed, named)


@pytest.mark.parametrize(("sql", "destroys"), [
    ("DROP TABLE app.users, events", ("table app.users", "table events")),
    ("DROP MATERIALIZED VIEW IF EXISTS totals", ("materialized view totals",)),
    ('DROP SCHEMA "Old Stuff" CASCADE', ("schema Old Stuff",)),
    ("TRUNCATE app.users, events", ("the rows of app.users", "the rows of events")),
    ("ALTER TABLE users DROP COLUMN email, ADD COLUMN x int, DROP COLUMN IF EXISTS y",
     ("column users.email", "column users.y")),
    ("ALTER TABLE users DROP CONSTRAINT users_email_key", ()),  # no data lost
    ("DROP INDEX CONCURRENTLY users_email_idx", ()),
    ("DROP VIEW v", ()),
    ("DELETE FROM users", ()),  # a data change, not a schema change: the migration's own business
])
def test_destroys_names_what_a_statement_loses(sql: str, destroys: tuple[str, ...]) -> None:
    assert analyse(sql).destroys == destroys
