"""The lint schema model names an index declared without a name as PostgreSQL does (checked on the server):
``<table>_pkey``, ``<table>_<cols>_key``, ``<table>_<cols>_excl``, ``<table>_<cols>_idx``, cut to 63 bytes and
numbered when the name is taken, so a later DROP CONSTRAINT / REINDEX / DROP INDEX finds the index's table."""

from __future__ import annotations

import psycopg
import pytest

from pgshift.lint.schema import Schema

LONG = "t" * 60  # with "_pkey" past 63 bytes: the table part is cut
COLUMN = "c" * 40
CASES = {
    "column primary key": "CREATE TABLE orders (id bigint PRIMARY KEY, email text);",
    "table primary key on two columns": "CREATE TABLE pairs (a int, b int, PRIMARY KEY (a, b));",
    "column and table unique": "CREATE TABLE users (id int, email text UNIQUE, a int, b int, UNIQUE (a, b));",
    "unique with include": "CREATE TABLE inc (a int, b int, UNIQUE (a) INCLUDE (b));",
    "exclusion": "CREATE TABLE ex (a int, b int, EXCLUDE USING btree (a WITH =, (b + 1) WITH =));",
    "exclusion naming a column twice": "CREATE TABLE ex2 (a int, EXCLUDE USING btree (a WITH =, a WITH =));",
    "added later by ALTER TABLE": "CREATE TABLE late (a int, b int);\nALTER TABLE late ADD PRIMARY KEY (a);\n"
                                  "ALTER TABLE late ADD UNIQUE (b);\nALTER TABLE late ADD COLUMN c int UNIQUE;",
    "long table name is cut": f"CREATE TABLE {LONG} (id int PRIMARY KEY, {COLUMN} int UNIQUE, x int, "
                              f"UNIQUE ({COLUMN}, x));",
    "the fixtures' long table": "CREATE TABLE customer_notification_preferences_by_channel_and_region_2024 (id bigint "
                                "PRIMARY KEY, email_address text, channel text, UNIQUE (email_address, channel));",
    "primary key using an index takes the constraint's name": "CREATE TABLE p (a int NOT NULL, b int NOT NULL);\n"
        "CREATE UNIQUE INDEX p_ux ON p (a);\nALTER TABLE p ADD CONSTRAINT p_pk PRIMARY KEY USING INDEX p_ux;\n"
        "CREATE UNIQUE INDEX p_uy ON p (b);\nALTER TABLE p ADD UNIQUE USING INDEX p_uy;",
    "multibyte name is cut on a character boundary": f"CREATE TABLE {'é' * 30} (id int PRIMARY KEY);",
    "renamed table keeps t_pkey: the new one gets t_pkey1": "CREATE TABLE t (id int PRIMARY KEY);\n"
        "ALTER TABLE t RENAME TO t_old;\nCREATE TABLE t (id int PRIMARY KEY);\nALTER TABLE t RENAME TO t_old2;\n"
        "CREATE TABLE t (id int PRIMARY KEY, a int UNIQUE);",
    "a table holding the name": "CREATE TABLE u_a_key (x int);\nCREATE TABLE u (a int UNIQUE);",
    "two unique constraints reaching one name": "CREATE TABLE v (a_b int UNIQUE, a int, b int, UNIQUE (a, b));",
    "a long clashing name is cut to fit the number": f"CREATE TABLE {LONG} (id int PRIMARY KEY);\n"
        f"ALTER TABLE {LONG} RENAME TO moved;\nCREATE TABLE {LONG} (id int PRIMARY KEY);",
    "create index without a name": "CREATE TABLE w (a int, b text);\nCREATE INDEX ON w (a);\nCREATE INDEX ON w (a);\n"
                                   "CREATE INDEX ON w (lower(b)) INCLUDE (a);\n"
                                   "CREATE INDEX ON w ((a::text), (a + 1), coalesce(b, ''));",
    "another schema": "CREATE SCHEMA s;\nCREATE TABLE t (id int PRIMARY KEY);\nCREATE TABLE s.t (id int PRIMARY KEY);",
}


def _model_names(sql: str) -> set[str]:
    schema = Schema()
    schema.load_sql(sql)
    return set(schema.index_tables)


@pytest.mark.parametrize("sql", CASES.values(), ids=CASES.keys())
def test_model_names_indexes_as_the_server_does(conn: psycopg.Connection[tuple[object, ...]], sql: str) -> None:
    conn.execute(sql)
    rows = conn.execute(
        "SELECT CASE WHEN n.nspname = 'public' THEN c.relname ELSE n.nspname || '.' || c.relname END"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'i' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')").fetchall()
    assert _model_names(sql) == {str(r[0]) for r in rows}


CONSTRAINT_CASES = {
    "checks on one, two and no column, numbered": "CREATE TABLE c1 (a int CHECK (a > 0), b int, CHECK (b > a), "
                                                  "CHECK (b IS NOT NULL), CHECK (true), CHECK (a < 10));",
    "checks added later": "CREATE TABLE c2 (a int CHECK (a > 0));\nALTER TABLE c2 ADD CHECK (a <> 5) NOT VALID;\n"
                          "ALTER TABLE c2 ADD COLUMN b int CHECK (b > 0);",
    "long check name is cut": f"CREATE TABLE {LONG} ({COLUMN} int CHECK ({COLUMN} > 0));",
    "foreign keys, column and table, numbered": "CREATE TABLE p (id int PRIMARY KEY, org int, UNIQUE (id, org));\n"
        "CREATE TABLE f (a int REFERENCES p, b int, FOREIGN KEY (a, b) REFERENCES p (id, org));\n"
        "ALTER TABLE f ADD FOREIGN KEY (a) REFERENCES p NOT VALID;\nALTER TABLE f ADD COLUMN c int REFERENCES p;",
}


@pytest.mark.parametrize("sql", CONSTRAINT_CASES.values(), ids=CONSTRAINT_CASES.keys())
def test_model_names_checks_and_foreign_keys_as_the_server_does(conn: psycopg.Connection[tuple[object, ...]],
                                                                 sql: str) -> None:
    """A VALIDATE CONSTRAINT of an unnamed NOT VALID check or foreign key names it by PostgreSQL's default name;
    lint must know that name (PS014 judged it by, PS011 reads the check's validation through it)."""
    conn.execute(sql)
    rows = conn.execute("SELECT conrelid::regclass::text, conname FROM pg_constraint WHERE contype IN ('c', 'f') "
                        "AND connamespace = 'public'::regnamespace").fetchall()
    schema = Schema()
    schema.load_sql(sql)
    modelled = {(t.name, name) for t in schema.tables.values() for name in [*t.checks, *t.foreign_keys]}
    assert modelled == {(str(r[0]), str(r[1])) for r in rows}
