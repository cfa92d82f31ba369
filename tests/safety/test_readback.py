"""A wide table's restored rows read back over pgshift's connection in pg_dump's text give exactly the
archive's bytes, so a correct copy is not read again by pg_dump; when they do not match, pg_dump's
own read decides."""

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
from pgshift.safety.manifest import Manifest, TableStat, read_manifest
from pgshift.safety.readback import has_wide_rows, read_rows
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
       (SELECT string_agg(sha512(int8send(g * 16 + k)), ''::bytea) FROM generate_series(0, 15) k), g * 1.25,
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


def _read(manifest: Manifest, copy_url: str, copy: str, key: TableKey) -> TableData | None:
    return read_rows(copy_url, copy, key, timezone=manifest.dump_timezone or "UTC",
                     encoding=manifest.encoding or "UTF8", settings=manifest.dump_settings or {})


def test_the_read_gives_the_archive_s_bytes_under_a_database_s_own_settings(
        pg_server: Any, db_name: str, db_url: str, tmp_path: Path) -> None:
    _with_database_defaults(db_url, db_name)
    with _restored_copy(pg_server, db_name, db_url, tmp_path) as (manifest, archived, copy_url, copy, _):
        with psycopg.connect(copy_url, autocommit=True) as conn:  # the copy carries the same defaults
            _set_defaults(conn, copy)
        assert {("Odd Schema", 'Weird "Name"'), ("public", "parent"), ("public", "child")} <= set(archived)
        for key in archived:
            assert _read(manifest, copy_url, copy, key) == archived[key], key
        assert archived[("public", "parent")].rows == 300 and archived[("Odd Schema", 'Weird "Name"')].rows == 1500
        weird = next(t for t in manifest.tables if t.name == 'Weird "Name"')
        parent = next(t for t in manifest.tables if t.name == "parent")
        assert has_wide_rows(weird) and not has_wide_rows(parent)


def test_a_database_in_another_encoding_is_read_in_it(
        pg_server: Any, db_name: str, db_url: str, tmp_path: Path) -> None:
    latin = f"{db_name}_latin1"
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
                      .format(sql.Identifier(latin)))
        try:
            latin_url = with_dbname(db_url, latin)
            with psycopg.connect(latin_url, autocommit=True) as conn:
                conn.execute("CREATE TABLE \"café\" (id int, note text)")
                conn.execute("INSERT INTO \"café\" SELECT g, 'déjà vu ' || g FROM generate_series(1, 50) g")
            with _restored_copy(pg_server, latin, latin_url, tmp_path) as (manifest, archived, copy_url, copy, _):
                assert manifest.encoding == "LATIN1"
                assert _read(manifest, copy_url, copy, ("public", "café")) == archived[("public", "café")]
        finally:
            drop_database(admin, latin)


def test_only_tables_of_wide_rows_are_read_over_the_connection() -> None:
    assert has_wide_rows(TableStat("public", "blobs", 454_545, None, 542_343_168, "archive"))
    assert not has_wide_rows(TableStat("public", "pgbench_accounts", 1_000_000, None, 150_000_000, "archive"))
    assert not has_wide_rows(TableStat("public", "not_counted_yet", None, None, 542_343_168, "archive"))
    assert not has_wide_rows(TableStat("public", "empty", 0, None, 8192, "archive"))


def test_a_matching_read_is_not_repeated_and_pg_dump_decides_when_it_differs(
        pg_server: Any, db_name: str, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _with_database_defaults(db_url, db_name)
    dumped: list[object] = []
    real_dump = tool_copy_data

    def counting_dump(*args: Any, **kwargs: Any) -> dict[TableKey, TableData]:
        dumped.append(args[0][-1])
        return real_dump(*args, **kwargs)

    weird = b'--table="Odd Schema"."Weird ""Name"""'
    with _restored_copy(pg_server, db_name, db_url, tmp_path) as (manifest, archived, copy_url, copy, bindir):
        monkeypatch.setattr(verify, "tool_copy_data", counting_dump)
        assert compare_large_tables(manifest, archived, copy_url, copy, bindir) == []
        assert len(dumped) == 2 and weird not in dumped  # the wide table was read once, by pgshift

        # A session that prints dates otherwise: that read does not match, and pg_dump's clears the copy.
        session = tuple(s if "DateStyle" not in s else "SET DateStyle = 'SQL, DMY'" for s in readback._PG_DUMP_SESSION)
        monkeypatch.setattr(readback, "_PG_DUMP_SESSION", session)
        dumped.clear()
        assert compare_large_tables(manifest, archived, copy_url, copy, bindir) == []
        assert weird in dumped
        monkeypatch.undo()
        monkeypatch.setattr(verify, "tool_copy_data", counting_dump)

        # A changed row: pgshift's read differs, pg_dump's read differs too, and that is reported.
        with psycopg.connect(copy_url, autocommit=True) as conn:
            conn.execute('UPDATE "Odd Schema"."Weird ""Name""" SET note = \'changed\' WHERE id = 7')
        dumped.clear()
        assert compare_large_tables(manifest, archived, copy_url, copy, bindir) == [
            "the rows of Odd Schema.Weird \"Name\" restored from the archive differ from the archive's"]
        assert weird in dumped


def test_a_table_that_cannot_be_read_is_left_to_pg_dump(
        pg_server: Any, db_name: str, db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(_AWKWARD)
    with _restored_copy(pg_server, db_name, db_url, tmp_path) as (manifest, _archived, copy_url, copy, _):
        key = ("Odd Schema", 'Weird "Name"')
        assert read_rows(copy_url, copy, key, timezone="UTC", encoding="UTF8",
                         settings={"bytea_output": "no such output"}) is None
        assert read_rows(copy_url, copy, key, timezone="UTC", encoding="LATIN1", settings={}) is None  # the €
        with psycopg.connect(copy_url, autocommit=True) as conn:
            conn.execute('DROP TABLE "Odd Schema"."Weird ""Name"""')
        assert _read(manifest, copy_url, copy, key) is None
