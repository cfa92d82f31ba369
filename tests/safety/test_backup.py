"""pgshift backup and backup verify on a real server."""

from __future__ import annotations

import json
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

import pgshift.safety.verify as verify
from pgshift.cli.main import cli
from pgshift.db.connect import drop_database, with_dbname
from pgshift.db.history import History
from pgshift.errors import BackupFailed
from pgshift.migrations.model import Migration, SqlMigration
from pgshift.safety import backup_required, latest_verified_backup, take_backup, verify_backup
from pgshift.safety.manifest import read_manifest, verifications
from pgshift.safety.readback import READER_NAME
from pgshift.safety.verify import (
    changed_file,
    compare_large_tables,
    compare_schema,
    compare_tables,
    read_archive,
    restore_into,
    restore_tool,
)
from tests.helpers import database_owner_role

from .helpers import make_settings, seed


def test_backup_writes_private_files_and_exact_manifest(pg_server: Any, db_url: str, tmp_path: Path) -> None:
    seed(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        history = History(conn, "pgshift")
        history.ensure()
        history.record(version="20240101", name="init", kind="versioned", checksum="x", status="applied",
                       source_format="native")
    result = take_backup(make_settings(tmp_path, db_url, pg_server), db_url)
    folder = result.backup.path
    manifest = read_manifest(folder)
    tables = {t.qualified: t for t in manifest.tables}
    assert tables["public.accounts"].rows == 500
    assert tables["public.trades"].rows == 300
    assert tables['audit.Weird Name'].rows == 3
    assert tables["public.accounts"].content_hash not in (None, "0")
    assert manifest.history_head == "20240101"
    assert manifest.server_major >= 12 and manifest.tools["pg_dump"][0].isdigit()
    assert manifest.files[0].path == "dump.pgdump" and len(manifest.files[0].sha256) == 64
    for path in [folder, *folder.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert result.verification is not None and result.verification.ok
    assert result.backup.verified


def test_full_verify_round_trip_and_directory_format(pg_server: Any, db_url: str, tmp_path: Path) -> None:
    seed(db_url)
    settings = make_settings(tmp_path, db_url, pg_server)
    result = take_backup(settings, db_url, jobs=2)
    assert result.backup.manifest.format == "directory"
    assert len(result.backup.manifest.files) > 2
    report = verify_backup(result.backup.path, full=True, url=db_url)
    assert report.ok and report.level == "full"
    assert any("content hashes" in p for p in report.passed)
    assert any("schema matches" in p for p in report.passed)
    with psycopg.connect(db_url) as conn:  # the scratch database is gone
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'pgshift_verify_%'").fetchone()
    assert left == (0,)
    assert latest_verified_backup(settings, "1h", full=True) is not None


def test_a_full_verification_without_a_server_is_refused_and_not_recorded(pg_server: Any, db_url: str,
                                                                           tmp_path: Path) -> None:
    settings = make_settings(tmp_path, db_url, pg_server)
    folder = take_backup(settings, db_url).backup.path
    with pytest.raises(BackupFailed, match="needs a server"):
        verify_backup(folder, full=True, url=None)
    assert [v["level"] for v in verifications(folder)] == ["quick"]  # the backup's own, nothing more
    assert latest_verified_backup(settings, "1h", full=True) is None


@pytest.mark.parametrize("what", ["missing", "a file's folder"])
def test_a_folder_that_is_no_backup_fails_verification(tmp_path: Path, what: str) -> None:
    """Nothing to read is a failure, never an empty report that passes."""
    folder = tmp_path / "missing"
    if what != "missing":
        folder = tmp_path / "notes"
        folder.mkdir()
        (folder / "notes.txt").write_text("no manifest here\n")
    with pytest.raises(BackupFailed, match="failed quick verification") as info:
        verify_backup(tmp_path / "missing" if what == "missing" else folder / "notes.txt")
    if what == "missing":
        assert f"{folder} does not exist or is not a backup folder" in str(info.value)


def test_counts_match_the_dumped_snapshot_under_concurrent_writes(
    pg_server: Any, db_url: str, tmp_path: Path
) -> None:
    seed(db_url)
    stop = threading.Event()

    def writer() -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            n = 10_000
            while not stop.is_set():
                conn.execute("INSERT INTO accounts (id, owner) VALUES (%s, 'w')", (n,))
                n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = take_backup(make_settings(tmp_path, db_url, pg_server), db_url)
    finally:
        stop.set()
        thread.join()
    verify_backup(result.backup.path, full=True, url=db_url)  # counts taken in pg_dump's snapshot


def _corrupt_cases(folder: Path, how: str) -> None:
    dump = folder / "dump.pgdump"
    data = bytearray(dump.read_bytes())
    if how == "truncated":
        dump.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "bitflip":
        data[len(data) // 2] ^= 0x10
        dump.write_bytes(bytes(data))
    elif how == "truncated-and-manifest-rewritten":
        # Even when someone "fixes" the checksum, pg_restore must read the whole archive.
        dump.write_bytes(bytes(data[: len(data) // 2]))
        manifest = json.loads((folder / "manifest.json").read_text())
        from pgshift.safety.manifest import sha256_file

        manifest["files"][0].update(size=dump.stat().st_size, sha256=sha256_file(dump))
        (folder / "manifest.json").write_text(json.dumps(manifest))
    elif how == "no-manifest":
        (folder / "manifest.json").unlink()
    elif how == "wrong-count":
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["tables"][0]["rows"] += 1
        (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("how", ["truncated", "bitflip", "truncated-and-manifest-rewritten", "no-manifest",
                                 "wrong-count"])
def test_damaged_backups_fail_verification(pg_server: Any, db_url: str, tmp_path: Path, how: str) -> None:
    seed(db_url, rows=3000)
    result = take_backup(make_settings(tmp_path, db_url, pg_server), db_url)
    _corrupt_cases(result.backup.path, how)
    full = False  # each damage is caught by the quick verification already
    with pytest.raises(BackupFailed) as info:
        verify_backup(result.backup.path, full=full, url=db_url)
    message = str(info.value)
    expected = {"truncated": "bytes", "bitflip": "sha256", "truncated-and-manifest-rewritten": "pg_restore",
                "no-manifest": "manifest.json", "wrong-count": "the manifest says"}[how]
    assert expected in message, message
    assert info.value.exit_code == 13
    if how != "no-manifest":
        runner = CliRunner()
        out = runner.invoke(cli, ["backup", "verify", str(result.backup.path), "-d", db_url]
                            + (["--restore-test"] if full else []))
        assert out.exit_code == 13, out.output


def test_password_never_in_argv_or_output(pg_server: Any, db_name: str, tmp_path: Path) -> None:
    if pg_server.cluster is None:
        pytest.skip("needs the embedded cluster's password login")  # pragma: no cover
    password = pg_server.cluster.state().password
    url = pg_server.tcp_url_for(db_name)
    assert password in url
    seed(url)
    settings = make_settings(tmp_path, url, pg_server)
    seen: dict[str, bytes] = {}
    with psycopg.connect(url) as blocker:
        # Hold a lock so pg_dump waits for it, still alive, while we read its /proc entry.
        blocker.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")

        def on_child(proc: Any) -> None:
            seen["pid"] = str(proc.pid).encode()

        outcome: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: outcome.update(r=take_backup(settings, url, on_child=on_child)))
        thread.start()
        deadline = time.monotonic() + 20
        while "pid" not in seen and time.monotonic() < deadline:
            time.sleep(0.02)
        pid = seen["pid"].decode()
        time.sleep(0.3)
        seen["cmdline"] = Path(f"/proc/{pid}/cmdline").read_bytes()
        seen["environ"] = Path(f"/proc/{pid}/environ").read_bytes()
        blocker.rollback()
    thread.join(timeout=60)
    assert b"pg_dump" in seen["cmdline"] and b"--dbname=" in seen["cmdline"]
    assert password.encode() not in seen["cmdline"]
    assert f"PGPASSWORD={password}".encode() in seen["environ"].split(b"\0")
    folder = outcome["r"].backup.path
    for path in folder.rglob("*.json"):
        assert password not in path.read_text()
    runner = CliRunner()
    for args in (["backup", "-d", url], ["backup", "list", "-d", url], ["backup", "verify", "latest", "-d", url,
                                                                          "--restore-test", "--json"]):
        out = runner.invoke(cli, [*args, "--config", str(_config(tmp_path, settings))])
        assert out.exit_code == 0, out.output
        assert password not in out.output
    bad = runner.invoke(cli, ["backup", "-d", url.replace("@127.0.0.1", "x@127.0.0.1")])
    assert bad.exit_code != 0 and password not in bad.output


def _config(tmp_path: Path, settings: Any) -> Path:
    path = tmp_path / "pgshift.toml"
    bindir = f'pg_bindir = "{settings.backup.pg_bindir}"\n' if settings.backup.pg_bindir else ""
    path.write_text(f'[backup]\ndirectory = "{settings.backup.directory}"\n{bindir}')
    return path


def test_retention_keeps_newest_verified(pg_server: Any, db_url: str, tmp_path: Path) -> None:
    seed(db_url, rows=10)
    settings = make_settings(tmp_path, db_url, pg_server)
    verified = take_backup(settings, db_url).backup
    unverified = [take_backup(settings, db_url, verify=False).backup for _ in range(2)]
    result = take_backup(settings, db_url, verify=False, keep=1)
    left = sorted(p.name for p in (tmp_path / "backups").iterdir())
    assert left == sorted([verified.path.name, result.backup.path.name])
    assert set(result.removed) == {b.path for b in unverified}
    found = latest_verified_backup(settings, timedelta(hours=1))
    assert found is not None and found.path == verified.path
    assert latest_verified_backup(settings, timedelta(seconds=0)) is None


def _migration(version: str) -> Migration:
    return SqlMigration(version=version, name="m", path=Path("m.sql"), up=[], down=None, checksum="c",
                     source_format="native")


def test_backup_required_policy() -> None:
    ms = [_migration("1"), _migration("2")]
    destructive = {"2"}
    is_destructive = lambda m: m.version in destructive  # noqa: E731
    assert backup_required("always", ms, is_destructive)
    assert not backup_required("always", [], is_destructive)
    assert not backup_required("never", ms, is_destructive)
    assert backup_required("destructive-only", ms, is_destructive)
    assert not backup_required("destructive-only", ms[:1], is_destructive)
    with pytest.raises(BackupFailed):
        backup_required("sometimes", ms, is_destructive)


def test_missing_newer_pg_dump_is_explained(pg_server: Any, db_url: str, tmp_path: Path) -> None:
    from pgshift.safety.tools import find_tool

    with pytest.raises(BackupFailed) as info:
        find_tool("pg_dump", 99)
    assert "PostgreSQL 99 or newer" in str(info.value)


def _fake_tool(folder: Path, name: str, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / name
    tool.write_text(f"#!/bin/sh\necho '{name} (PostgreSQL) {version}'\n")
    tool.chmod(0o755)
    return tool


def test_an_explicit_bindir_is_taken_when_new_enough_and_passed_over_when_too_old(tmp_path: Path) -> None:
    from pgshift.safety.tools import find_tool

    new_enough = _fake_tool(tmp_path / "new", "pg_restore", "15.99")
    chosen = find_tool("pg_restore", 15, bindir=tmp_path / "new")
    assert (chosen.path, chosen.version, chosen.major) == (new_enough, "15.99", 15)
    # Too old for the server: the machine's own pg_restore of that major instead (the suite's PostgreSQL).
    _fake_tool(tmp_path / "old", "pg_restore", "11.2")
    fallback = find_tool("pg_restore", 15, bindir=tmp_path / "old")
    assert fallback.major >= 15 and fallback.path.parent != tmp_path / "old"
    with pytest.raises(BackupFailed, match=r"found: .*old/pg_restore \(11\.2\)"):
        find_tool("pg_restore", 98, bindir=tmp_path / "old")


def test_hash_method_is_the_cheapest_that_works_per_table(pg_server: Any, db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE plain (id bigint PRIMARY KEY, note text, amount numeric(10, 2))")
        conn.execute("INSERT INTO plain SELECT g, 'n' || g, g / 3.0 FROM generate_series(1, 200) g")
        conn.execute("CREATE TABLE docs (id bigint PRIMARY KEY, body json)")  # json has no hash function
        conn.execute("""INSERT INTO docs SELECT g, json_build_object('g', g) FROM generate_series(1, 50) g""")
        # An enum hashes by its label's OID, which a restore changes: it must fall back to the text form.
        conn.execute("CREATE TYPE mood AS ENUM ('ok', 'meh'); CREATE TABLE moods (id bigint PRIMARY KEY, m mood)")
        conn.execute("INSERT INTO moods SELECT g, (ARRAY['ok', 'meh']::mood[])[1 + g % 2] FROM generate_series(1, 9) g")
        modern = conn.info.server_version >= 140000
    settings = make_settings(tmp_path, db_url, pg_server)
    result = take_backup(settings, db_url)
    tables = {t.qualified: t for t in result.backup.manifest.tables}
    assert tables["public.plain"].check == ("record-hash" if modern else "hash")
    assert tables["public.docs"].check == "hash"
    assert tables["public.moods"].check == "hash"
    assert verify_backup(result.backup.path, full=True, url=db_url).ok
    # A changed value with the same row count is caught by either method.
    manifest_path = result.backup.path / "manifest.json"
    data = json.loads(manifest_path.read_text())
    for table in data["tables"]:
        if table["name"] == "plain":
            table["content_hash"] = str(int(table["content_hash"]) + 1)
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(BackupFailed, match=r"public\.plain has the right row count but different content"):
        verify_backup(result.backup.path, full=True, url=db_url)


def _true_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        tables = conn.execute("SELECT schemaname, relname FROM pg_stat_user_tables").fetchall()
        return {f"{s}.{n}": int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(  # type: ignore[index]
            sql.Identifier(s, n))).fetchone()[0]) for s, n in tables}


@pytest.mark.parametrize("large_tables", ["archive", "count"])
def test_large_tables_are_counted_then_compared_row_for_row_with_the_archive(
    pg_server: Any, db_url: str, tmp_path: Path, large_tables: str
) -> None:
    seed(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        # Rows out of key order on disk, and a session time zone other than the dump's.
        conn.execute("UPDATE accounts SET balance = balance + 1 WHERE id % 3 = 0")
        conn.execute("SELECT set_config('TimeZone', 'Asia/Kolkata', false)")
        conn.execute(sql.SQL("ALTER DATABASE {} SET TimeZone = 'Asia/Kolkata'").format(
            sql.Identifier(conn.info.dbname)))
    # Every table is "large".
    settings = make_settings(tmp_path, db_url, pg_server, hash_max_mb=0, large_tables=large_tables)
    result = take_backup(settings, db_url, verify=False)
    manifest = result.backup.manifest
    assert {t.check for t in manifest.tables} == {large_tables}
    assert all(t.content_hash is None for t in manifest.tables)
    assert manifest.dump_timezone == "UTC" and manifest.snapshot_shared
    truth = _true_counts(db_url)
    if large_tables == "archive":  # not counted on the server: the first verification counts the archive
        assert all(t.rows is None for t in manifest.tables)
        report = verify_backup(result.backup.path)
        assert any(f"row counts of {len(truth)} large table(s) taken from the archive" in p for p in report.passed)
        assert stat.S_IMODE((result.backup.path / "manifest.json").stat().st_mode) == 0o600
        manifest = read_manifest(result.backup.path)
    assert {t.qualified: t.rows for t in manifest.tables} == truth
    report = verify_backup(result.backup.path, full=True, url=db_url)
    assert any(f"restored rows of {len(manifest.tables)} large table(s) equal the archive's" in p
               for p in report.passed), report.passed

    # One changed value in a restored copy, with the same row count, is caught.
    tool = restore_tool(manifest, settings.backup.pg_bindir)
    archived = read_archive(result.backup.path, manifest, tool, hashed=lambda _: True)
    assert archived[("public", "accounts")].rows == 500
    copy = f"{manifest.database}_copy"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(copy)))
        try:
            restore_into(result.backup.path, manifest, tool, db_url, copy)
            copy_url = with_dbname(db_url, copy)
            assert compare_large_tables(manifest, archived, copy_url, copy, settings.backup.pg_bindir) == []
            with psycopg.connect(copy_url, autocommit=True) as changer:
                changer.execute('UPDATE audit."Weird Name" SET x = 7 WHERE x = 2')
            problems = compare_large_tables(manifest, archived, copy_url, copy, settings.backup.pg_bindir)
        finally:
            drop_database(conn, copy)
    assert problems == ["the rows of audit.Weird Name restored from the archive differ from the archive's"]


def test_full_verify_compares_owners_and_grants_and_copes_with_a_missing_role(
    pg_server: Any, db_name: str, db_url: str, tmp_path: Path
) -> None:
    owner, reader = f"{db_name}_owner", f"{db_name}_reader"
    ident = sql.Identifier
    with psycopg.connect(db_url, autocommit=True) as conn:
        superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)
        for role in (owner, reader):
            conn.execute(sql.SQL("CREATE ROLE {}").format(ident(role)))
        conn.execute("CREATE TABLE ledger (id bigint PRIMARY KEY, amount numeric)")
        conn.execute(sql.SQL("ALTER TABLE ledger OWNER TO {}").format(ident(owner)))
        conn.execute(sql.SQL("GRANT SELECT ON ledger TO {}").format(ident(reader)))
    try:
        backup = take_backup(make_settings(tmp_path, db_url, pg_server), db_url).backup
        report = verify_backup(backup.path, full=True, url=db_url)
        assert any(p.endswith("owners and grants included") for p in report.passed) == superuser, report.passed
        with psycopg.connect(db_url, autocommit=True) as conn:  # the role the grant names disappears
            conn.execute(sql.SQL("REVOKE ALL ON ledger FROM {}").format(ident(reader)))
            conn.execute(sql.SQL("DROP ROLE {}").format(ident(reader)))
        report = verify_backup(backup.path, full=True, url=db_url)
        assert report.ok
        if superuser:
            assert f"owners and grants not compared: role {reader} does not exist on this server" in report.passed
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("DROP TABLE ledger")
            for role in (owner, reader):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident(role)))


def test_a_missing_role_named_only_in_post_data_is_restored_again_without_owners(
    pg_server: Any, db_name: str, db_url: str, tmp_path: Path
) -> None:
    """Default privileges are restored with the post-data section, beside the row checks: a role
    only they name, gone since the backup, makes the restore-test restore again without owners."""
    reader = f"{db_name}_default_reader"
    with psycopg.connect(db_url, autocommit=True) as conn:
        superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(reader)))
        conn.execute("CREATE TABLE ledger (id bigint PRIMARY KEY, amount numeric)")
        conn.execute("INSERT INTO ledger SELECT g, g FROM generate_series(1, 20) g")
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {}").format(
            sql.Identifier(reader)))
    try:
        backup = take_backup(make_settings(tmp_path, db_url, pg_server, hash_max_mb=0), db_url).backup
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM {}").format(
                sql.Identifier(reader)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(reader)))
        report = verify_backup(backup.path, full=True, url=db_url)
        assert report.ok, report.problems
        assert "the restored rows of 1 large table(s) equal the archive's" in report.passed
        assert any(p.startswith("the restored schema matches") for p in report.passed)
        if superuser:
            assert f"owners and grants not compared: role {reader} does not exist on this server" in report.passed
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("DROP TABLE ledger")
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(reader)))


def test_a_post_data_failure_beside_the_row_checks_fails_the_restore_test_and_leaves_no_scratch(
    pg_server: Any, db_name: str, db_url: str, tmp_path: Path
) -> None:
    """The rows are compared while the post-data section is restored. An index that cannot be built
    on restore (its function calls another found only through search_path, which pg_restore empties)
    fails the restore-test, naming the section, once the row checks beside it are done; the scratch
    database is dropped."""
    seed(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION twice(i int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT i * 2'")
        conn.execute("CREATE FUNCTION doubled(i int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT twice(i)'")
        conn.execute("CREATE INDEX accounts_doubled ON accounts (doubled(id))")
    settings = make_settings(tmp_path, db_url, pg_server, hash_max_mb=0)  # every table read back byte for byte
    result = take_backup(settings, db_url)
    assert result.verification is not None and result.verification.ok  # the quick check restores nothing
    with pytest.raises(BackupFailed) as failed:
        verify_backup(result.backup.path, full=True, url=db_url)
    message = failed.value.message
    assert "(post-data section) into database pgshift_verify_" in message, message
    assert "function twice(integer) does not exist" in message, message
    assert failed.value.hint is not None and "schema-qualify" in failed.value.hint
    recorded = verifications(result.backup.path)[-1]
    assert any("restored rows of 3 large table(s) equal the archive's" in p for p in recorded["passed"])
    assert not any("schema" in p for p in recorded["passed"])  # compared only after post-data succeeds
    with psycopg.connect(db_url, autocommit=True) as conn:
        names = [str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()]
    assert not [n for n in names if n.startswith(f"pgshift_verify_{db_name[:30]}_")]


def test_a_latin1_database_with_non_ascii_names_and_rows_round_trips(
    pg_server: Any, db_url: str, db_name: str, tmp_path: Path
) -> None:
    """pg_dump writes names and rows in the database's encoding: verify, and restore --table,
    must read them in it (not as UTF-8)."""
    from pgshift.safety.restore import restore_database, restore_table

    name = f"{db_name}_latin1"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
                             "TEMPLATE template0").format(sql.Identifier(name)))
        try:
            url = with_dbname(db_url, name)
            with psycopg.connect(url, autocommit=True) as latin:
                latin.execute('CREATE TABLE "café" (id int PRIMARY KEY, dessert text)')
                latin.execute("""INSERT INTO "café" VALUES (1, 'crème'), (2, 'brûlée')""")
            settings = make_settings(tmp_path, url, pg_server, hash_max_mb=0)  # row-for-row check too
            result = take_backup(settings, url)
            assert result.verification is not None and result.verification.ok
            assert verify_backup(result.backup.path, full=True, url=url).ok
            with psycopg.connect(url, autocommit=True) as latin:
                latin.execute("""UPDATE "café" SET dessert = 'gone'""")
            restore_table(settings, result.backup.path, "public.café", url)
            with psycopg.connect(url) as latin:
                rows = latin.execute('SELECT dessert FROM "café" ORDER BY id').fetchall()
            assert rows == [("crème",), ("brûlée",)]
            report = restore_database(settings, result.backup.path, url)  # and the whole database
            assert report.ok and report.kept_as
            drop_database(conn, report.kept_as)
            with psycopg.connect(url) as latin:
                assert latin.execute("SELECT pg_encoding_to_char(encoding) FROM pg_database "
                                     "WHERE datname = current_database()").fetchone() == ("LATIN1",)
                assert latin.execute('SELECT count(*) FROM "café"').fetchone() == (2,)
        finally:
            drop_database(conn, name)


def test_verify_names_a_missing_backup_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "no-such-backup"
    runner = CliRunner()
    out = runner.invoke(cli, ["backup", "verify", str(missing)])
    assert out.exit_code == 13
    assert f"No backup named {missing}: {missing} does not exist." in out.output
    relative = runner.invoke(cli, ["backup", "verify", "nightly"])  # also looked for in backup.directory
    assert relative.exit_code == 13 and "neither nightly nor" in relative.output
    assert "`pgshift backup list` shows the backups in" in relative.output  # the way out, not just the miss


def _seq_scans(url: str, table: str, at_least: int) -> int:
    """pg_stat_user_tables.seq_scan of ``table``, once it reaches ``at_least`` (sessions report their
    statistics when they end, a moment after the client sees them go) or after a few seconds."""
    deadline = time.monotonic() + 10
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT seq_scan FROM pg_stat_user_tables WHERE relid = %s::regclass",
                               (table,)).fetchone()
            scans = int(row[0]) if row else 0
            if scans >= at_least or time.monotonic() > deadline:
                return scans
            time.sleep(0.1)


@pytest.mark.parametrize(("large_tables", "server_reads"), [("archive", 1), ("count", 2)])
def test_a_large_table_is_read_once_on_the_server_unless_counted_there(
    pg_server: Any, db_url: str, tmp_path: Path, large_tables: str, server_reads: int
) -> None:
    seed(db_url)
    before = -1
    while (now := _seq_scans(db_url, "trades", 0)) != before:  # the seeding sessions' reports are in
        before = now
        time.sleep(0.5)
    settings = make_settings(tmp_path, db_url, pg_server, hash_max_mb=0, large_tables=large_tables)
    take_backup(settings, db_url, verify=False)
    reads = _seq_scans(db_url, "trades", before + server_reads)
    time.sleep(0.5)  # a read that came late would show now
    assert _seq_scans(db_url, "trades", 0) - before == reads - before == server_reads


def test_a_backup_folder_that_cannot_be_made_is_named_with_exit_20(
    pg_server: Any, db_url: str, tmp_path: Path
) -> None:
    seed(db_url)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the backups should go\n")
    out = CliRunner().invoke(cli, ["backup", "-d", db_url, "--to", str(blocker / "backups")])
    assert out.exit_code == 20, out.output
    assert f"{blocker / 'backups'}: Not a directory" in out.output and "nothing was dumped" in out.output
    assert blocker.read_text() == "a file where the backups should go\n"


def test_a_full_disk_while_writing_the_manifest_is_disk_full_and_leaves_no_half_backup(
    pg_server: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import pgshift.safety.backup as backup_module

    seed(db_url)

    def full(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(backup_module, "write_private", full)
    out = CliRunner().invoke(cli, ["backup", "-d", db_url, "--to", str(tmp_path / "backups")],
                             obj=None, catch_exceptions=False)
    assert out.exit_code == 15, out.output
    assert "manifest.json: No space left on device" in out.output and "incomplete backup was removed" in out.output
    assert list((tmp_path / "backups").iterdir()) == []


def test_a_disk_that_fills_up_during_the_dump_is_disk_full_and_keeps_nothing(
    pg_server: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pgshift.safety.backup as backup_module

    seed(db_url)
    real = backup_module.dump_argv

    def onto_a_full_device(*args: Any) -> list[str]:  # pg_dump really writes, and /dev/full is always full
        return [a if not a.startswith("--file=") else "--file=/dev/full" for a in real(*args)]

    monkeypatch.setattr(backup_module, "dump_argv", onto_a_full_device)
    out = CliRunner().invoke(cli, ["backup", "-d", db_url, "--to", str(tmp_path / "backups")])
    assert out.exit_code == 15, out.output
    assert "filled up during the backup" in out.output and "No space left on device" in out.output
    assert list((tmp_path / "backups").iterdir()) == []


def test_a_table_lock_held_past_lock_wait_is_lock_held_naming_the_table(
    pg_server: Any, db_url: str, tmp_path: Path
) -> None:
    seed(db_url)
    with psycopg.connect(db_url) as holder:  # a "migration" holding its lock: pg_dump cannot read trades
        holder.execute("LOCK TABLE trades IN ACCESS EXCLUSIVE MODE")
        out = CliRunner().invoke(cli, ["backup", "-d", db_url, "--to", str(tmp_path / "backups")],
                                 env={"PGSHIFT_LOCK_WAIT": "300ms"})
        holder.rollback()
    assert out.exit_code == 9, out.output
    assert "gave up waiting for a lock on table public.trades after lock_wait (300ms)" in out.output
    assert list((tmp_path / "backups").iterdir()) == []


def test_a_database_s_limits_for_the_application_do_not_end_the_backup_s_session(
        pg_server: Any, db_url: str, db_name: str, tmp_path: Path) -> None:
    """The backup's session holds pg_dump's snapshot in a transaction left idle while pg_dump runs, and
    hashes tables in it: a database's idle_in_transaction_session_timeout and statement_timeout (kept for
    the application) ended it, and the backup with it."""
    seed(db_url, rows=20)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE hashed_long AS SELECT g AS id, md5(g::text) AS note "
                     "FROM generate_series(1, 400000) g")
        for name, value in (("idle_in_transaction_session_timeout", "10ms"), ("statement_timeout", "50ms")):
            conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(db_name), sql.Identifier(name), sql.Literal(value)))
    out = CliRunner().invoke(cli, ["backup", "-d", db_url, "--to", str(tmp_path / "backups")])
    assert out.exit_code == 0, out.output
    [folder] = (tmp_path / "backups").iterdir()
    assert verify_backup(folder).ok


def test_a_backup_whose_session_is_lost_removes_its_folder_and_says_so(
        pg_server: Any, db_url: str, tmp_path: Path) -> None:
    seed(db_url, rows=20)
    settings = make_settings(tmp_path, db_url, pg_server)
    with psycopg.connect(db_url) as holder, ThreadPoolExecutor(1) as pool:
        holder.execute("LOCK TABLE trades IN ACCESS EXCLUSIVE MODE")  # the backup's count waits here
        backup = pool.submit(take_backup, settings, db_url)
        with psycopg.connect(db_url, autocommit=True) as admin:
            deadline = time.monotonic() + 15
            while not admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name "
                                    "= 'pgshift-backup' AND wait_event_type = 'Lock'").fetchall():
                assert time.monotonic() < deadline, "the backup's session never waited for the lock"
                time.sleep(0.05)
        with pytest.raises(BackupFailed) as failed:
            backup.result(timeout=30)
        holder.rollback()
    assert "The backup's own session (which holds the snapshot pg_dump reads) was lost while it ran" in \
        failed.value.message, failed.value.message
    assert "was removed" in failed.value.message
    assert list(Path(settings.resolve(settings.backup.directory)).iterdir()) == []


def test_tables_whose_rows_row_level_security_hides_are_named_before_pg_dump_refuses_them(
        pg_server: Any, db_url: str, db_name: str, tmp_path: Path) -> None:
    """pg_dump turns row_security off and then refuses a table whose rows the policies would filter for
    its role (another owner's table with policies, or its own with FORCE ROW LEVEL SECURITY); the backup
    says so before writing anything, and the role the hint asks for backs it up whole."""
    with psycopg.connect(db_url, autocommit=True) as conn, \
            database_owner_role(conn, db_name, db_url, "tenant", owns_public=True) as url:
        with psycopg.connect(url, autocommit=True) as owner:
            owner.execute("CREATE TABLE docs (id int PRIMARY KEY, tenant text); "
                          "INSERT INTO docs SELECT g, 't' || (g % 3) FROM generate_series(1, 30) g; "
                          "ALTER TABLE docs ENABLE ROW LEVEL SECURITY; ALTER TABLE docs FORCE ROW LEVEL SECURITY; "
                          "CREATE POLICY by_tenant ON docs USING (tenant = current_setting('app.tenant', true))")
        role = conninfo_to_dict(url)["user"]
        out = CliRunner().invoke(cli, ["backup", "-d", url, "--to", str(tmp_path / "backups")])
        assert out.exit_code == 27, out.output
        message = " ".join(out.output.split())
        assert f"row-level security policies would hide rows of 1 table(s) from role '{role}' (the user in " \
               f"database_url): public.docs (owner {role}, FORCE ROW LEVEL SECURITY)" in message, message
        assert not (tmp_path / "backups").exists() or list((tmp_path / "backups").iterdir()) == []
        fix = message.split("have an administrator run ", 1)[1].split(", or set", 1)[0]
        conn.execute(fix.encode())
        out = CliRunner().invoke(cli, ["backup", "-d", url, "--to", str(tmp_path / "backups")])
        assert out.exit_code == 0, out.output
        [folder] = (tmp_path / "backups").iterdir()
        assert [(t.name, t.rows) for t in read_manifest(folder).tables] == [("docs", 30)]


def test_a_file_added_to_a_directory_format_dump_fails_the_quick_verification(
    pg_server: Any, db_url: str, tmp_path: Path
) -> None:
    seed(db_url, rows=20)
    folder = take_backup(make_settings(tmp_path, db_url, pg_server), db_url, fmt="directory", verify=False).backup.path
    assert verify_backup(folder).ok
    (folder / "dump" / "9999.dat.gz").write_bytes(b"not pg_dump's")  # every listed file is still intact
    with pytest.raises(BackupFailed, match=r"dump/9999\.dat\.gz is not in the manifest"):
        verify_backup(folder)


def test_a_column_named_like_the_row_alias_is_hashed_with_the_whole_row(
        pg_server: Any, db_url: str, tmp_path: Path) -> None:
    """The content hash reads each row through an alias; a column of the same name (t) once stood in
    for the row: the record hash failed on it (the backup with it), the text hash covered that column only."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE hashed (id int, t text)")
        conn.execute("CREATE TABLE texted (id int, t text, at point)")
        for table in ("hashed", "texted"):
            conn.execute(sql.SQL("INSERT INTO {} (id, t) SELECT g, 'same' FROM generate_series(1, 50) g").format(
                sql.Identifier(table)))
    manifest = take_backup(make_settings(tmp_path, db_url, pg_server), db_url).backup.manifest
    assert {t.name: t.check for t in manifest.tables} == {"hashed": "record-hash", "texted": "hash"}
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE hashed SET id = id + 1000 WHERE id = 1")
        conn.execute("UPDATE texted SET id = id + 1000 WHERE id = 1")
        problems = compare_tables(conn, manifest)
    assert [p.split(" has the right row count but different content")[0] for p in problems] == [
        "table public.hashed", "table public.texted"], problems


def test_compare_tables_is_not_cut_short_by_the_session_s_statement_timeout(
        pg_server: Any, db_url: str, tmp_path: Path) -> None:
    """A restore compares every table's count in the new database under the role's own settings; a
    statement_timeout kept there for the application cancelled the count of a large table at the end
    of the restore."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE hashed_long AS SELECT g AS id, md5(g::text) AS note "
                     "FROM generate_series(1, 400000) g")
    manifest = take_backup(make_settings(tmp_path, db_url, pg_server), db_url, verify=False).backup.manifest
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '20ms'")
        assert compare_tables(conn, manifest) == []


def test_compare_tables_reports_every_table_after_a_missing_one(pg_server: Any, db_url: str, tmp_path: Path) -> None:
    seed(db_url, rows=20)
    manifest = take_backup(make_settings(tmp_path, db_url, pg_server), db_url, verify=False).backup.manifest
    first, last = manifest.tables[0], manifest.tables[-1]
    assert (first.qualified, last.qualified) == ("audit.Weird Name", "public.trades")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute('DROP TABLE audit."Weird Name"')
        conn.execute("DELETE FROM trades WHERE id = 1")
        assert compare_tables(conn, manifest) == [
            "table audit.Weird Name is missing", "table public.trades has 299 rows, the manifest says 300"]


def test_compare_tables_hashes_under_the_pinned_settings_whatever_the_session_says(
        pg_server: Any, db_url: str, tmp_path: Path) -> None:
    """A row's text depends on the session's TimeZone, DateStyle and float digits: the comparison sets
    the ones the manifest's hashes were taken under, or a restored copy with other defaults would differ."""
    seed(db_url, rows=20)  # timestamptz, numeric and float8 columns
    manifest = take_backup(make_settings(tmp_path, db_url, pg_server), db_url, verify=False).backup.manifest
    assert {t.check for t in manifest.tables} <= {"hash", "record-hash"}
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'Asia/Kolkata'")
        conn.execute("SET DateStyle = 'German, DMY'")
        conn.execute("SET extra_float_digits = 0")
        assert compare_tables(conn, manifest) == []


class _RecordingCursor(psycopg.Cursor[Any]):
    """Keeps the text of every statement it runs, to see how a table was read."""

    statements: ClassVar[list[str]] = []  # one test process runs one test at a time

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = query.as_string(self.connection) if isinstance(query, sql.Composable) else str(query)
        _RecordingCursor.statements.append(text)
        return super().execute(query, params, **kwargs)


def test_compare_tables_only_counts_the_tables_it_is_not_to_hash(pg_server: Any, db_url: str, tmp_path: Path) -> None:
    """Hashing reads every row's text: count-only tables (over backup.hash_max_mb), and every table of
    the restore's count check (hashes=False), must be counted, not hashed."""
    seed(db_url, rows=20)
    hashed = take_backup(make_settings(tmp_path / "a", db_url, pg_server), db_url, verify=False).backup.manifest
    counted = take_backup(make_settings(tmp_path / "b", db_url, pg_server, hash_max_mb=0, large_tables="count"), db_url,
                          verify=False).backup.manifest
    assert {t.check for t in counted.tables} == {"count"}
    assert {t.check for t in hashed.tables} <= {"hash", "record-hash"}
    with psycopg.connect(db_url, autocommit=True, cursor_factory=_RecordingCursor) as conn:
        for manifest, hashes in ((counted, True), (hashed, False)):
            _RecordingCursor.statements = []
            assert compare_tables(conn, manifest, hashes=hashes) == []
            reads = [s for s in _RecordingCursor.statements if "count(*)" in s]
            assert len(reads) == 3 and not any("hash" in s for s in reads), reads
        _RecordingCursor.statements = []
        assert compare_tables(conn, hashed) == []  # and the hashed ones are hashed
        assert sum("hash" in s for s in _RecordingCursor.statements) == 3


def test_a_large_table_s_rows_are_counted_in_its_byte_for_byte_read_not_scanned_again(
        pg_server: Any, db_url: str, tmp_path: Path) -> None:
    """The restore-test reads each large table once: compare_tables only looks for it (no count(*)),
    and the byte-for-byte read counts its rows. A missing row is still named with both counts, a
    changed row still differs, and a dropped table is still missing."""
    seed(db_url, rows=20)
    settings = make_settings(tmp_path, db_url, pg_server, hash_max_mb=0)  # every table large
    folder = take_backup(settings, db_url).backup.path  # its quick verification counts the archive
    manifest = read_manifest(folder)
    assert {t.qualified: t.rows for t in manifest.tables} == _true_counts(db_url)
    report = verify_backup(folder, full=True, url=db_url)
    assert "row counts of 3 large table(s) match, counted in that read" in report.passed, report.passed
    tool = restore_tool(manifest, settings.backup.pg_bindir)
    archived = read_archive(folder, manifest, tool, hashed=lambda _: True)
    large = {(t.schema, t.name) for t in manifest.tables}
    copy = f"{manifest.database}_copy"
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(copy)))
        try:
            restore_into(folder, manifest, tool, db_url, copy)
            copy_url = with_dbname(db_url, copy)

            def large_rows() -> list[str]:
                return compare_large_tables(manifest, archived, copy_url, copy, settings.backup.pg_bindir)

            with psycopg.connect(copy_url, autocommit=True, cursor_factory=_RecordingCursor) as conn:
                _RecordingCursor.statements = []
                assert compare_tables(conn, manifest, read_elsewhere=large) == []
                assert not [s for s in _RecordingCursor.statements if "count(*)" in s]
                assert large_rows() == []
                conn.execute("DELETE FROM trades WHERE id = 1")
                assert large_rows() == ["table public.trades has 299 rows, the manifest says 300",
                                        "the rows of public.trades restored from the archive differ from the archive's"]
                conn.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 3")  # same count, other rows
                assert large_rows() == [
                    "the rows of public.accounts restored from the archive differ from the archive's",
                    "table public.trades has 299 rows, the manifest says 300",
                    "the rows of public.trades restored from the archive differ from the archive's"]
                conn.execute('DROP TABLE audit."Weird Name"')
                assert compare_tables(conn, manifest, read_elsewhere=large) == ["table audit.Weird Name is missing"]
                assert "the rows of audit.Weird Name restored from the archive differ from the archive's" \
                    in large_rows()
        finally:
            drop_database(admin, copy)


def test_each_large_table_s_read_locks_only_that_table(pg_server: Any, db_url: str, tmp_path: Path) -> None:
    """pg_dump holds every table it dumps until it ends, and the post-data restore beside the read
    needs each table alone for its primary key: each large table is read on its own, so while one
    table's read waits, the tables read before it are free and the ones after it not yet taken."""
    seed(db_url, rows=20)
    settings = make_settings(tmp_path, db_url, pg_server, hash_max_mb=0)  # every table large
    folder = take_backup(settings, db_url).backup.path
    manifest = read_manifest(folder)
    archived = read_archive(folder, manifest, restore_tool(manifest, settings.backup.pg_bindir), hashed=lambda _: True)
    names = [sql.Identifier(t.schema, t.name) for t in manifest.tables]
    copy = f"{manifest.database}_copy"
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(copy)))
        try:
            copy_url = with_dbname(db_url, copy)
            restore_into(folder, manifest, restore_tool(manifest, settings.backup.pg_bindir), db_url, copy)
            with psycopg.connect(copy_url) as blocker, psycopg.connect(copy_url, autocommit=True) as watcher:
                # The last table stays locked, as a primary key being built holds it: its read waits.
                blocker.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(names[-1]))
                with ThreadPoolExecutor(max_workers=1) as pool:
                    reading = pool.submit(compare_large_tables, manifest, archived, copy_url, copy,
                                          settings.backup.pg_bindir)
                    try:
                        deadline = time.monotonic() + 20
                        while not (waiting := watcher.execute(
                                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                "AND application_name IN ('pg_dump', %s) AND wait_event_type = 'Lock'",
                                (READER_NAME,)).fetchall()):
                            assert time.monotonic() < deadline and not reading.done(), "no reader waits for the lock"
                            time.sleep(0.05)
                        [(pid,)] = waiting
                        held = watcher.execute(
                            "SELECT relation::regclass::text, granted FROM pg_locks WHERE pid = %s "
                            "AND locktype = 'relation' AND relation IN (SELECT oid FROM pg_class WHERE relkind = 'r' "
                            "AND relnamespace::regnamespace::text IN ('public', 'audit'))", (pid,)).fetchall()
                        blocked = watcher.execute(sql.SQL("SELECT {}::regclass::text").format(
                            sql.Literal(names[-1].as_string(watcher)))).fetchone()
                        assert blocked is not None and held == [(blocked[0], False)], held
                        with watcher.transaction():  # a table whose read is done can be altered at once
                            watcher.execute("SET LOCAL lock_timeout = '100ms'")
                            for name in names[:-1]:
                                watcher.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(name))
                    finally:
                        blocker.rollback()  # else the pool waits for the read forever
                    assert reading.result(timeout=20) == []
        finally:
            drop_database(admin, copy)


def test_the_schema_is_compared_while_the_large_tables_are_still_read(
        pg_server: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once post-data is restored, the schema comparison runs beside the large tables' byte-for-byte
    read (which a primary key's build holds back), not after it."""
    seed(db_url, rows=20)
    folder = take_backup(make_settings(tmp_path, db_url, pg_server, hash_max_mb=0), db_url).backup.path
    schema_compared = threading.Event()
    schema_first: list[bool] = []
    real_schema, real_rows = verify.compare_schema, verify.compare_large_tables

    def compare_schema_(*args: Any, **kwargs: Any) -> list[str]:
        try:
            return real_schema(*args, **kwargs)
        finally:
            schema_compared.set()

    def compare_large_tables_(*args: Any, **kwargs: Any) -> list[str]:
        problems = real_rows(*args, **kwargs)
        schema_first.append(schema_compared.wait(timeout=10))  # the read ends only after the schema check
        return problems

    monkeypatch.setattr(verify, "compare_schema", compare_schema_)
    monkeypatch.setattr(verify, "compare_large_tables", compare_large_tables_)
    report = verify_backup(folder, full=True, url=db_url)
    assert report.ok and schema_first == [True], (report.problems, schema_first)
    assert [p for p in report.passed if "restored rows" in p or "restored schema" in p] == [
        "the restored rows of 3 large table(s) equal the archive's",
        "the restored schema matches the archive's" + (", owners and grants included" if any(
            "owners and grants included" in p for p in report.passed) else "")]


@pytest.mark.parametrize("fmt", ["custom", "directory"])
def test_the_restore_test_hashes_only_the_large_tables_rows_in_the_archive(
        pg_server: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """The archive's rows are hashed for the byte-for-byte comparison of the large tables only: a
    small table is compared by its content hash on the server, so hashing its COPY text is wasted."""
    seed(db_url, rows=15000)  # accounts, with its indexes, is over 1 MB; the other two are not
    folder = take_backup(make_settings(tmp_path, db_url, pg_server, hash_max_mb=1), db_url, fmt=fmt).backup.path
    checks = {t.qualified: t.check for t in read_manifest(folder).tables}
    assert checks["public.accounts"] == "archive" and checks["public.trades"] in ("hash", "record-hash"), checks
    read: list[dict[tuple[str, str], Any]] = []
    real_once, real_read = verify.read_archive_once, verify.read_archive

    def read_archive_once_(*args: Any, **kwargs: Any) -> Any:
        result = real_once(*args, **kwargs)
        assert result.tables is not None, result.failure
        read.append(result.tables)
        return result

    def read_archive_(*args: Any, **kwargs: Any) -> Any:
        result = real_read(*args, **kwargs)
        read.append(result)
        return result

    monkeypatch.setattr(verify, "read_archive_once", read_archive_once_)
    monkeypatch.setattr(verify, "read_archive", read_archive_)
    report = verify_backup(folder, full=True, url=db_url)
    assert "the restored rows of 1 large table(s) equal the archive's" in report.passed, report.passed
    expected = {"public.accounts": True, "public.trades": False, "audit.Weird Name": False}
    if fmt == "custom":  # the backup's own read-back recorded the large table's digest: no second read
        assert read == []
        assert {t.qualified: t.copy_sha256 is not None for t in read_manifest(folder).tables} == expected
        return
    [tables] = read
    assert {f"{schema}.{name}": data.sha256 is not None for (schema, name), data in tables.items()} == expected


def test_the_restore_test_uses_the_rows_the_backup_recorded_and_still_catches_a_difference(
        pg_server: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The backup's read-back records each large table's row digest; --restore-test then proves the
    archive is those bytes (its sha256) and compares the restored copy with the digest, without a
    second decompression of the archive. A digest that does not match the restored rows still fails,
    as does an archive changed since."""
    seed(db_url)
    folder = take_backup(make_settings(tmp_path, db_url, pg_server, hash_max_mb=0), db_url).backup.path
    manifest = read_manifest(folder)
    assert manifest.tables and all(t.check == "archive" and t.copy_sha256 and t.rows is not None
                                   for t in manifest.tables), manifest.tables

    def no_second_read(*_: Any, **__: Any) -> Any:
        raise AssertionError("the archive was read back again")

    monkeypatch.setattr(verify, "read_archive_once", no_second_read)
    monkeypatch.setattr(verify, "read_archive", no_second_read)
    report = verify_backup(folder, full=True, url=db_url)
    assert report.ok, report.problems
    assert f"the rows of {len(manifest.tables)} large table(s) as the backup read them back from these bytes " \
           "(row count and sha256 in the manifest)" in report.passed, report.passed
    assert f"the restored rows of {len(manifest.tables)} large table(s) equal the archive's" in report.passed

    raw = json.loads((folder / "manifest.json").read_text())
    kept = json.dumps(raw)
    for table in raw["tables"]:
        if table["name"] == "trades":
            table["copy_sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BackupFailed) as failed:
        verify_backup(folder, full=True, url=db_url)
    assert "failed full verification: the rows of public.trades restored from the archive differ from the " \
           "archive's." in failed.value.message, failed.value.message

    (folder / "manifest.json").write_text(kept)
    archive = folder / manifest.dump
    data = bytearray(archive.read_bytes())
    data[-5] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(BackupFailed) as failed:
        verify_backup(folder, full=True, url=db_url)
    assert f"failed full verification: {changed_file(manifest.dump).rstrip('.')}." in failed.value.message, \
        failed.value.message


def test_a_database_s_own_bytea_output_is_how_the_restored_rows_are_read_back(
        pg_server: Any, db_url: str, db_name: str, tmp_path: Path) -> None:
    """pg_dump prints bytea as the database's default says (``ALTER DATABASE ... SET bytea_output =
    escape``, kept by apps on old drivers); the scratch copy has no such default, so the restored rows
    are read with the setting the backup recorded, not compared as different. A setting this server
    cannot take is named beside the difference it explains."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET bytea_output = 'escape'").format(sql.Identifier(db_name)))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE files (id int PRIMARY KEY, body bytea)")
        conn.execute("INSERT INTO files SELECT g, convert_to('body ' || g, 'UTF8') FROM generate_series(1, 500) g")
    folder = take_backup(make_settings(tmp_path, db_url, pg_server, hash_max_mb=0), db_url).backup.path
    manifest = read_manifest(folder)
    assert manifest.dump_settings is not None and manifest.dump_settings["bytea_output"] == "escape"
    report = verify_backup(folder, full=True, url=db_url)
    assert report.ok, report.problems
    assert "the restored rows of 1 large table(s) equal the archive's" in report.passed, report.passed

    raw = json.loads((folder / "manifest.json").read_text())
    raw["dump_settings"] = {"bytea_output": "hex", "lc_monetary": "no_such_locale"}
    (folder / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BackupFailed) as failed:
        verify_backup(folder, full=True, url=db_url)
    assert "the rows of public.files restored from the archive differ from the archive's (the archive was " \
           "dumped with lc_monetary = no_such_locale, which this server does not accept)" in failed.value.message, \
        failed.value.message


def test_a_freshly_loaded_large_table_gets_its_digest_recorded(pg_server: Any, db_url: str, tmp_path: Path) -> None:
    """The catalog's size estimate is 0 pages until a table is vacuumed or analysed (as after a bulk
    load): such a table is hashed while read back, so a large one gets its digest all the same."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE loaded (id int, note text) WITH (autovacuum_enabled = false)")
        conn.execute("INSERT INTO loaded SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g")
        assert conn.execute("SELECT relpages FROM pg_class WHERE oid = 'loaded'::regclass").fetchone() == (0,)
    result = take_backup(make_settings(tmp_path, db_url, pg_server, hash_max_mb=1), db_url)
    [loaded] = result.backup.manifest.tables
    assert loaded.check == "archive" and loaded.rows == 20000 and loaded.copy_sha256, loaded
    assert result.verification is not None
    # Its count came from the archive: no "row count for 0 table(s)" line beside that one.
    assert not any("holds the manifest's row count" in p for p in result.verification.passed)
    assert "row counts of 1 large table(s) taken from the archive and written to the manifest (backup.large_tables " \
           "= archive: not counted on the server)" in result.verification.passed, result.verification.passed


def test_a_backup_without_recorded_digests_is_read_back_for_the_restore_test(
        pg_server: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backup made before the digests were recorded (or whose large table was not hashed while it was
    read back) has its archive read back again, as before."""
    seed(db_url)
    folder = take_backup(make_settings(tmp_path, db_url, pg_server, hash_max_mb=0), db_url).backup.path
    raw = json.loads((folder / "manifest.json").read_text())
    for table in raw["tables"]:
        del table["copy_sha256"]
    (folder / "manifest.json").write_text(json.dumps(raw))
    reads: list[object] = []
    real = verify.read_archive_once

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(verify, "read_archive_once", counted)
    report = verify_backup(folder, full=True, url=db_url)
    assert report.ok, report.problems
    assert len(reads) == 1 and any(p.startswith("the whole archive reads back (pg_restore ") for p in report.passed)
    assert "the restored rows of 3 large table(s) equal the archive's" in report.passed, report.passed


def test_compare_schema_names_what_the_restored_database_lacks(pg_server: Any, db_url: str, tmp_path: Path) -> None:
    seed(db_url, rows=20)
    settings = make_settings(tmp_path, db_url, pg_server)
    backup = take_backup(settings, db_url, verify=False).backup
    tool = restore_tool(backup.manifest, settings.backup.pg_bindir)
    copy = f"{backup.manifest.database}_schema"
    owner = sql.Identifier(f"{copy}_owner")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(copy)))
        conn.execute(sql.SQL("CREATE ROLE {}").format(owner))
        try:
            restore_into(backup.path, backup.manifest, tool, db_url, copy)
            args = (backup.path, backup.manifest, tool, db_url, copy, settings.backup.pg_bindir)
            assert compare_schema(*args) == []
            with psycopg.connect(with_dbname(db_url, copy), autocommit=True) as changer:
                changer.execute(sql.SQL('ALTER TABLE audit."Weird Name" OWNER TO {}').format(owner))
            assert compare_schema(*args) == []  # owners are compared only when asked (they were restored)
            assert "OWNER TO" in compare_schema(*args, owners=True)[0]
            with psycopg.connect(with_dbname(db_url, copy), autocommit=True) as changer:
                changer.execute('ALTER TABLE audit."Weird Name" OWNER TO CURRENT_USER')
                changer.execute("ALTER TABLE accounts DROP COLUMN tags")
            problems = compare_schema(*args)
            with psycopg.connect(with_dbname(db_url, copy), autocommit=True) as changer:
                changer.execute("DROP TABLE trades")
            many = compare_schema(*args)
        finally:
            drop_database(conn, copy)
            conn.execute(sql.SQL("DROP ROLE {}").format(owner))
    assert problems == ["the restored schema differs from the archive's: -    opened timestamp with time zone DEFAULT "
                        "now(), | -    tags text[] | +    opened timestamp with time zone DEFAULT now()"], problems
    # A long difference is cut to its first six lines, so the message stays readable.
    assert len(many) == 1 and len(many[0].split(" | ")) == 6, many
    assert many[0].startswith("the restored schema differs from the archive's: -    opened timestamp"), many


def test_backup_reads_its_archive_back_while_pg_dump_writes_it(pg_server: Any, db_url: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The default backup reads the archive back while pg_dump writes it, not after (#17: within 5% of
    pg_dump -Fc): no read of the finished archive through pg_restore, one pass for its sha256."""
    import hashlib

    from pgshift.safety import manifest as manifest_module
    from pgshift.safety import verify as verify_module

    seed(db_url, rows=2000)
    extra_reads: list[Path] = []
    real_sha, real_read = manifest_module.sha256_file, verify_module.read_archive_once

    def counted(path: Path, chunk: int = 1 << 20) -> str:
        extra_reads.append(path)
        return real_sha(path, chunk)

    def read_after(path: Path, *args: Any, **kwargs: Any) -> Any:
        extra_reads.append(path)
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(manifest_module, "sha256_file", counted)
    monkeypatch.setattr(verify_module, "sha256_file", counted)
    monkeypatch.setattr(verify_module, "read_archive_once", read_after)
    result = take_backup(make_settings(tmp_path, db_url, pg_server), db_url)
    assert extra_reads == []
    assert result.verification is not None and result.verification.ok
    assert verify_module.FOLLOWED in result.verification.passed
    assert "the archive holds the manifest's row count for 3 table(s)" in result.verification.passed
    dump = result.backup.path / "dump.pgdump"
    assert read_manifest(result.backup.path).files[0].sha256 == hashlib.sha256(dump.read_bytes()).hexdigest()
    monkeypatch.undo()
    later = verify_backup(result.backup.path)  # a later quick verification: one read, hash compared
    assert later.ok and "sha256 of 1 file(s) match the manifest" in later.passed
    # It says what it read back, and with which pg_restore (both reads, the backup's and the later one).
    for passed in (result.verification.passed, later.passed):
        assert any(p.startswith("the whole archive reads back (pg_restore ") for p in passed), passed


def test_a_quick_verification_given_a_server_does_not_hash_the_large_tables(
        pg_server: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pgshift backup verify` passes the configured URL even without --restore-test: the quick check must
    still only count the large tables' archived rows; hashing them is for the full check's comparison."""
    from pgshift.safety import verify as verify_module

    seed(db_url, rows=20)
    folder = take_backup(make_settings(tmp_path, db_url, pg_server, hash_max_mb=0), db_url).backup.path
    assert {t.check for t in read_manifest(folder).tables} == {"archive"}
    answers: list[bool] = []
    real_read = verify_module.read_archive_once

    def recording(path: Path, tool: Any, *, hashed: Callable[[Any], bool]) -> Any:
        def asked(key: Any) -> bool:
            answers.append(hashed(key))
            return answers[-1]

        return real_read(path, tool, hashed=asked)

    monkeypatch.setattr(verify_module, "read_archive_once", recording)
    report = verify_backup(folder, url=db_url)
    assert report.ok and report.level == "quick"
    assert len(answers) == 3 and not any(answers), answers  # each table's rows read, none hashed


def _flip_before_the_final_check(monkeypatch: pytest.MonkeyPatch, where: Callable[[Path], int]) -> list[int]:
    """Change one byte of the finished archive after the follower read it, before it is checked."""
    from pgshift.safety import verify as verify_module
    from pgshift.safety.follow import check_final as real

    flipped: list[int] = []

    def flip_then_check(path: Path, read: Any) -> Any:
        data = bytearray(path.read_bytes())
        at = where(path)
        data[at] ^= 0x5A
        path.write_bytes(bytes(data))
        flipped.append(at)
        return real(path, read)

    monkeypatch.setattr(verify_module, "check_final", flip_then_check)
    return flipped


def test_archive_data_that_changes_after_it_was_read_back_fails_the_backup(
    pg_server: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What was read back while pg_dump wrote must be the finished file: a data byte that differs sends
    the backup to read the finished file back, which fails on it; nothing is kept as verified."""
    seed(db_url, rows=3000)
    flipped = _flip_before_the_final_check(monkeypatch, lambda path: path.stat().st_size - 200)
    with pytest.raises(BackupFailed) as failed:
        take_backup(make_settings(tmp_path, db_url, pg_server), db_url)
    assert flipped and "failed quick verification" in failed.value.message, failed.value.message


def test_a_changed_table_of_contents_is_read_back_again_from_the_finished_file(
    pg_server: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TOC that differs beyond its data offsets is not the TOC the follower read: the finished file is
    read back through pg_restore instead, and its own sha256 goes into the manifest."""
    import hashlib

    from pgshift.safety import verify as verify_module
    from pgshift.safety.follow import parse_toc

    seed(db_url)

    def in_the_toc(path: Path) -> int:
        data = path.read_bytes()
        toc = parse_toc(data)
        return data.index(b"accounts", 0, toc.end) + 1  # a table's name: pg_restore still reads it

    flipped = _flip_before_the_final_check(monkeypatch, in_the_toc)
    result = take_backup(make_settings(tmp_path, db_url, pg_server), db_url)
    assert flipped and result.verification is not None and result.verification.ok
    assert verify_module.FOLLOWED not in result.verification.passed
    assert any("same read that read it back" in p for p in result.verification.passed)
    dump = result.backup.path / "dump.pgdump"
    assert read_manifest(result.backup.path).files[0].sha256 == hashlib.sha256(dump.read_bytes()).hexdigest()


def test_an_archive_version_the_follower_does_not_know_is_read_back_after_the_dump(
    pg_server: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgshift.safety import follow as follow_module
    from pgshift.safety import verify as verify_module

    seed(db_url)

    def unknown(buf: bytes | bytearray) -> Any:
        raise follow_module.UnknownArchive("archive version 1.99")

    monkeypatch.setattr(follow_module, "parse_toc", unknown)
    result = take_backup(make_settings(tmp_path, db_url, pg_server), db_url)
    assert result.verification is not None and result.verification.ok
    assert verify_module.FOLLOWED not in result.verification.passed
    assert "the archive holds the manifest's row count for 3 table(s)" in result.verification.passed


def test_a_final_toc_pg_restore_cannot_list_sends_the_backup_to_read_the_finished_file(
    pg_server: Any, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgshift.safety import follow as follow_module
    from pgshift.safety import verify as verify_module

    seed(db_url)
    listed: list[int] = []

    def failed(self: Any) -> bool:
        listed.append(self.proc.wait())
        return False

    monkeypatch.setattr(follow_module.TocListing, "succeeded", failed)
    result = take_backup(make_settings(tmp_path, db_url, pg_server), db_url)
    assert listed and result.verification is not None and result.verification.ok
    assert verify_module.FOLLOWED not in result.verification.passed
    assert any("same read that read it back" in p for p in result.verification.passed)


def test_parse_toc_finds_where_a_real_archive_s_data_begins(pg_server: Any, db_url: str, tmp_path: Path) -> None:
    from pgshift.safety.follow import UnknownArchive, parse_toc
    from pgshift.safety.follow import _NeedMore as NeedMore

    seed(db_url)
    result = take_backup(make_settings(tmp_path, db_url, pg_server), db_url, verify=False)
    data = (result.backup.path / "dump.pgdump").read_bytes()
    toc = parse_toc(data)
    # pg_dump writes the first table's data right after the TOC; every entry has an offset field.
    assert toc.data_offsets and min(toc.data_offsets) == toc.end
    assert len(toc.data_offsets) == 3 and len(toc.offset_fields) > 3
    assert all(data[start] in (1, 2, 3) for start, _ in toc.offset_fields)
    with pytest.raises(NeedMore):
        parse_toc(data[:toc.end - 1])
    with pytest.raises(UnknownArchive):
        parse_toc(data[:5] + bytes([1, 99, 0]) + data[8:])
    with pytest.raises(UnknownArchive):
        parse_toc(b"PGDMX" + data[5:])
