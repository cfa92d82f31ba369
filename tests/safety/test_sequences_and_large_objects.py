"""What no table's row count shows: the restore-test compares every sequence's position with the one the
archive sets (a sequence left behind its keys fails the application's next insert), and the number of
large objects with the one in pg_dump's snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pgshift.safety.restore as restore
import pgshift.safety.sequences as sequences
import pgshift.safety.verify as verify
from pgshift.db.connect import drop_database, with_dbname
from pgshift.errors import BackupFailed, RestoreFailed
from pgshift.safety import take_backup
from pgshift.safety.manifest import read_manifest
from pgshift.safety.sequences import archived_sequences, compare_sequences
from pgshift.safety.tools import Tool
from pgshift.safety.verify import restore_into, restore_tool
from tests.helpers import run_pgshift

from .helpers import make_settings

SEQUENCES = r'''
CREATE SCHEMA "Billing Dept";
CREATE TABLE orders (id serial PRIMARY KEY, note text);
INSERT INTO orders (note) SELECT 'o' || g FROM generate_series(1, 42) g;
CREATE TABLE "Billing Dept".invoices (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, total numeric);
INSERT INTO "Billing Dept".invoices (total) SELECT g FROM generate_series(1, 5) g;
CREATE SEQUENCE "Billing Dept"."it's ""quoted""" START 7;
SELECT nextval('"Billing Dept"."it''s ""quoted"""');
CREATE SEQUENCE never_used;
CREATE SEQUENCE countdown INCREMENT -5 MINVALUE -1000000 MAXVALUE 0 START 0;
SELECT nextval('countdown'), nextval('countdown');
CREATE SEQUENCE huge START 9000000000000000000;
SELECT nextval('huge');
'''


def test_the_archive_s_sequence_positions_are_compared_with_the_restored_copy_s(
        pg_server: Any, db_url: str, db_name: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(SEQUENCES)
        truth: dict[str, int | None] = dict(conn.execute(
            "SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences").fetchall())
    settings = make_settings(tmp_path, db_url, pg_server)
    folder = take_backup(settings, db_url).backup.path
    manifest = read_manifest(folder)
    tool = restore_tool(manifest, settings.backup.pg_bindir)
    archived = archived_sequences(folder / manifest.dump, tool)
    assert archived == truth, (archived, truth)
    assert archived["public.orders_id_seq"] == 42 and archived["public.never_used"] is None
    assert archived['"Billing Dept"."it\'s ""quoted"""'] == 7 and archived["public.countdown"] == -5
    assert archived["public.huge"] == 9_000_000_000_000_000_000

    copy = f"{db_name}_copy"
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(copy)))
        try:
            restore_into(folder, manifest, tool, db_url, copy)
            with psycopg.connect(with_dbname(db_url, copy), autocommit=True) as restored:
                assert compare_sequences(restored, archived) == []
                restored.execute("SELECT setval('orders_id_seq', 1)")  # behind the restored keys
                restored.execute("SELECT nextval('never_used')")
                restored.execute("DROP SEQUENCE huge")
                assert sorted(compare_sequences(restored, archived)) == [
                    "sequence public.huge is missing",
                    "sequence public.never_used is at 1 after the restore, the archive sets it to its start "
                    "(never used)",
                    "sequence public.orders_id_seq is at 1 after the restore, the archive sets it to 42"]
        finally:
            drop_database(admin, copy)

    done = run_pgshift(["backup", "verify", str(folder), "--restore-test"], cwd=tmp_path, url=db_url,
                       env={"PGSHIFT_BACKUP__PG_BINDIR": settings.backup.pg_bindir} if settings.backup.pg_bindir
                       else None)
    assert done.returncode == 0, done.stderr
    assert f"the positions of {len(truth)} sequence(s) match the archive's" in done.stdout, done.stdout


def test_a_sequence_the_restore_left_elsewhere_fails_the_restore_test_and_the_restore(
        pg_server: Any, db_url: str, db_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever moved it (here: the archive's side read as one position further), a sequence whose restored
    position differs fails `--restore-test` and stops `pgshift restore` before its swap."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY)")
        conn.execute("INSERT INTO orders SELECT FROM generate_series(1, 42)")
    settings = make_settings(tmp_path, db_url, pg_server)
    folder = take_backup(settings, db_url).backup.path
    real = sequences.archived_sequences

    def one_further(archive: Path, tool: Tool) -> dict[str, int | None]:
        return {name: None if value is None else value + 1 for name, value in real(archive, tool).items()}

    monkeypatch.setattr(verify, "archived_sequences", one_further)
    with pytest.raises(BackupFailed) as failed:
        verify.verify_backup(folder, full=True, url=db_url, bindir=settings.backup.pg_bindir)
    assert "sequence public.orders_id_seq is at 42 after the restore, the archive sets it to 43" in failed.value.message
    monkeypatch.undo()  # the verification passes; the copy beside the live database is the one that differs
    monkeypatch.setattr(restore, "archived_sequences", one_further)
    with pytest.raises(RestoreFailed) as stopped:
        restore.restore_database(settings, folder, db_url)
    message = stopped.value.message
    assert "The restored copy does not match the backup: sequence public.orders_id_seq is at 42" in message, message
    assert f"the live database {db_name} was not touched" in message


def test_large_objects_are_counted_in_pg_dump_s_snapshot_and_in_the_restored_copy(
        pg_server: Any, db_url: str, db_name: str, tmp_path: Path) -> None:
    """Large objects live outside every table, so no row count saw them: the backup counts them in
    pg_dump's snapshot, and the restore-test (and `restore`'s copy) must hold as many."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE files (id int PRIMARY KEY, blob oid)")
        conn.execute("INSERT INTO files SELECT g, lo_from_bytea(0, convert_to(repeat('x', g * 1000), 'UTF8')) "
                     "FROM generate_series(1, 3) g")
    settings = make_settings(tmp_path, db_url, pg_server)
    folder = take_backup(settings, db_url).backup.path
    manifest = read_manifest(folder)
    assert manifest.large_objects == 3
    report = verify.verify_backup(folder, full=True, url=db_url, bindir=settings.backup.pg_bindir)
    assert "all 3 large object(s) are there (counted)" in report.passed, report.passed
    copy = f"{db_name}_copy"
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(copy)))
        try:
            restore_into(folder, manifest, restore_tool(manifest, settings.backup.pg_bindir), db_url, copy)
            with psycopg.connect(with_dbname(db_url, copy), autocommit=True) as restored:
                assert verify.compare_tables(restored, manifest) == []
                restored.execute("SELECT lo_unlink(blob) FROM files WHERE id = 2")
                assert verify.compare_tables(restored, manifest) == [
                    "2 large object(s) were restored, the backup holds 3"]
        finally:
            drop_database(admin, copy)
