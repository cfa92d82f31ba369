"""The restored rows read back in pg_dump's text by psql sessions (two at once on PostgreSQL 14+)
give exactly the archive's bytes, so a correct copy is not read a second time by pg_dump; when they
do not match, pg_dump's own read decides."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgshift.safety.readback as readback
import pgshift.safety.verify as verify
from pgshift.db.connect import drop_database, with_dbname
from pgshift.safety import take_backup
from pgshift.safety.copydata import TableData, TableKey, tool_copy_data
from pgshift.safety.manifest import Manifest, read_manifest
from pgshift.safety.readback import TID_RANGE_SCAN, copy_statements, read_rows
from pgshift.safety.tools import child_connection, database_codec, find_tool, with_server_options
from pgshift.safety.verify import compare_large_tables, read_archive, restore_into, restore_tool

from .helpers import make_settings

# Every type whose text depends on a session setting pg_dump pins or inherits, and table shapes
# whose column list or scan differ from a plain SELECT *.
_AWKWARD = r'''
CREATE SCHEMA "Odd Schema";
CREATE TABLE parent (id int, label text);
CREATE TABLE child (extra int) INHERITS (parent);
INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 300) g;
INSERT INTO child SELECT g, 'c' || g, g FROM generate_series(1, 300) g;
CREATE TABLE "Odd Schema"."Weird ""Name""" (
    id int, gone text, at timestamptz, day date, span interval, ratio float8, little float4,
    raw bytea, price money, rel regclass, doc jsonb, words text[], note text,
    doubled int GENERATED ALWAYS AS (id * 2) STORED);
ALTER TABLE "Odd Schema"."Weird ""Name""" DROP COLUMN gone;
INSERT INTO "Odd Schema"."Weird ""Name""" (id, at, day, span, ratio, little, raw, price, rel, doc, words, note)
SELECT g, '2026-02-13 10:00:00+00'::timestamptz + g * interval '7 minutes', date '2026-02-13' + g,
       make_interval(days => g, secs => g / 7.0), g / 3.0, (g / 7.0)::float4,
       decode(md5(g::text) || md5((g * 3)::text), 'hex'), g * 1.25,
       CASE WHEN g % 2 = 0 THEN 'pg_class'::regclass ELSE 'public.parent'::regclass END,
       jsonb_build_object('k', g, 'é', repeat('x', g % 5)), ARRAY[g::text, NULL, 'a"b'],
       CASE WHEN g % 4 = 0 THEN NULL ELSE E'tab\there, back\\slash, newline\nhere, ' || repeat('€', g % 3) END
FROM generate_series(1, 1500) g;
'''


@contextmanager
def _restored_copy(pg_server: Any, db_name: str, db_url: str, tmp_path: Path
                   ) -> Iterator[tuple[Manifest, dict[TableKey, TableData], str, str, str | None]]:
    settings = make_settings(tmp_path, db_url, pg_server, hash_max_mb=0)  # every table "large"
    folder = take_backup(settings, db_url).backup.path
    manifest = read_manifest(folder)
    tool = restore_tool(manifest, settings.backup.pg_bindir)
    archived = read_archive(folder, manifest, tool, hashed=lambda _: True)
    copy = f"{db_name}_copy"
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(copy)))
        try:
            restore_into(folder, manifest, tool, db_url, copy)
            yield manifest, archived, with_dbname(db_url, copy), copy, settings.backup.pg_bindir
        finally:
            drop_database(admin, copy)


# Session defaults that change how rows print, as a team's database may carry them.
_DEFAULTS = [("TimeZone", "Asia/Kolkata"), ("DateStyle", "SQL, DMY"), ("IntervalStyle", "iso_8601"),
             ("extra_float_digits", "0"), ("bytea_output", "escape"), ("search_path", 'public, "Odd Schema"')]


def _set_defaults(conn: psycopg.Connection[Any], database: str) -> None:
    for name, value in _DEFAULTS:
        conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
            sql.Identifier(database), sql.Identifier(name), sql.Literal(value)))


def _with_database_defaults(db_url: str, db_name: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(_AWKWARD)
        _set_defaults(conn, db_name)


def test_the_split_read_gives_the_archive_s_bytes_under_a_database_s_own_settings(
        pg_server: Any, db_name: str, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _with_database_defaults(db_url, db_name)
    with _restored_copy(pg_server, db_name, db_url, tmp_path) as (manifest, archived, copy_url, copy, bindir):
        with psycopg.connect(copy_url, autocommit=True) as conn:  # the copy carries the same defaults
            _set_defaults(conn, copy)
            major = conn.info.server_version // 10000
        keys = sorted(archived)
        assert ("Odd Schema", 'Weird "Name"') in keys and ("public", "parent") in keys
        setup, plans = copy_statements(copy_url, copy, keys)
        weird = plans[("Odd Schema", 'Weird "Name"')]
        assert len(weird) == (2 if major >= TID_RANGE_SCAN else 1), weird  # over 2 pages: halves
        assert "doubled" not in weird[0] and "ONLY" in plans[("public", "parent")][0]
        conninfo, env = child_connection(copy_url, copy)
        env["PGTZ"] = manifest.dump_timezone or "UTC"
        conninfo = with_server_options(conninfo, "-c bytea_output=escape")
        psql = find_tool("psql", manifest.server_major, bindir=bindir)
        monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")  # the user's own, which cannot print the euro signs
        for key in keys:
            ours = read_rows(psql, conninfo, env, manifest.encoding or "UTF8", setup, plans[key],
                             database_codec(manifest.encoding))
            assert ours == archived[key], key
        assert archived[("public", "parent")].rows == 300 and archived[("Odd Schema", 'Weird "Name"')].rows == 1500


def test_a_matching_read_is_not_repeated_and_pg_dump_decides_when_it_differs(
        pg_server: Any, db_name: str, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _with_database_defaults(db_url, db_name)
    dumped: list[object] = []
    real_dump = tool_copy_data

    def counting_dump(*args: Any, **kwargs: Any) -> dict[TableKey, TableData]:
        dumped.append(args[0][-1])
        return real_dump(*args, **kwargs)

    with _restored_copy(pg_server, db_name, db_url, tmp_path) as (manifest, archived, copy_url, copy, bindir):
        monkeypatch.setattr(verify, "tool_copy_data", counting_dump)
        assert compare_large_tables(manifest, archived, copy_url, copy, bindir) == []
        assert dumped == []  # every table's split read matched: pg_dump never ran

        # A session that prints dates otherwise: its reads do not match, and pg_dump's read clears the copy.
        session = tuple(s if "DateStyle" not in s else "SET DateStyle = 'SQL, DMY'" for s in readback._PG_DUMP_SESSION)
        monkeypatch.setattr(readback, "_PG_DUMP_SESSION", session)
        assert compare_large_tables(manifest, archived, copy_url, copy, bindir) == []
        assert len(dumped) == 1, dumped  # only the table with dates was read again
        monkeypatch.undo()
        monkeypatch.setattr(verify, "tool_copy_data", counting_dump)

        # A changed row: the split read differs, pg_dump's read differs too, and that is reported.
        with psycopg.connect(copy_url, autocommit=True) as conn:
            conn.execute("UPDATE ONLY parent SET label = 'changed' WHERE id = 7")
        dumped.clear()
        assert compare_large_tables(manifest, archived, copy_url, copy, bindir) == [
            "the rows of public.parent restored from the archive differ from the archive's"]
        assert len(dumped) == 1


def test_a_reader_that_fails_leaves_the_read_to_pg_dump(
        pg_server: Any, db_name: str, db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(_AWKWARD)
    with _restored_copy(pg_server, db_name, db_url, tmp_path) as (manifest, archived, copy_url, copy, bindir):
        setup, plans = copy_statements(copy_url, copy, sorted(archived))
        conninfo, env = child_connection(copy_url, copy)
        psql = find_tool("psql", manifest.server_major, bindir=bindir)
        statements = plans[("Odd Schema", 'Weird "Name"')]
        broken = [*statements[:-1], statements[-1].replace("TO STDOUT", "TO STDOUT (FORMAT nonsense)")]
        assert read_rows(psql, conninfo, env, "UTF8", setup, broken, "utf-8") is None
        with psycopg.connect(copy_url, autocommit=True) as conn:
            conn.execute('DROP TABLE "Odd Schema"."Weird ""Name"""')
        assert copy_statements(copy_url, copy, [("Odd Schema", 'Weird "Name"')])[1] == {}
