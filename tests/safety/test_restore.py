"""pgshift restore on a real server: the swap, the hooks, and every failure before the swap."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgshift.cli.main import cli
from pgshift.config import Settings
from pgshift.errors import RestoreFailed
from pgshift.safety import take_backup
from pgshift.safety.restore import restore_database, restore_table
from pgshift.units import Duration

from .helpers import HealthServer, count, databases, make_settings, seed


@pytest.fixture
def health() -> Iterator[HealthServer]:
    server = HealthServer(200)
    yield server
    server.close()


def _hooks(tmp_path: Path, settings: Settings, health_url: str | None, stop_extra: str = "",
           health_timeout: str = "5s") -> tuple[Settings, Path]:
    log = tmp_path / "hooks.log"
    app = dataclasses.replace(
        settings.app,
        stop_command=[sys.executable, "-c",
                      f"open({str(log)!r}, 'a').write('stop\\n'); print('stopping app'){stop_extra}"],
        start_command=[sys.executable, "-c", f"open({str(log)!r}, 'a').write('start\\n')"],
        health_url=health_url, health_timeout=Duration.parse(health_timeout))
    return dataclasses.replace(settings, app=app), log


def _cleanup(admin_url: str, prefix: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in databases(admin_url, prefix + "%"):
            conn.execute(psycopg.sql.SQL("DROP DATABASE {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))


def _large_unverified(tmp_path: Path, db_url: str, pg_server: Any, large: bool) -> tuple[Any, Path]:
    """A backup of the seeded database; with ``large``, every table is over hash_max_mb and the
    backup was not verified, so the manifest has no row counts until the restore's verification."""
    settings = make_settings(tmp_path, db_url, pg_server, **({"hash_max_mb": 0} if large else {}))
    manifest = take_backup(settings, db_url, verify=not large).backup.manifest
    assert all((t.rows is None) == large for t in manifest.tables)
    return settings, tmp_path / "backups" / next((tmp_path / "backups").iterdir()).name


@pytest.mark.parametrize("large", [False, True], ids=["hashed", "large-unverified"])
def test_round_trip_restore_swaps_and_keeps_the_old_database(
    pg_server: Any, db_name: str, db_url: str, tmp_path: Path, health: HealthServer, large: bool
) -> None:
    seed(db_url)
    settings, folder = _large_unverified(tmp_path, db_url, pg_server, large)
    with psycopg.connect(db_url, autocommit=True) as conn:  # the "bad migration"
        conn.execute("DELETE FROM trades")
        conn.execute("ALTER TABLE accounts DROP COLUMN tags")
    settings, log = _hooks(tmp_path, settings, health.url)
    lines: list[str] = []
    try:
        report = restore_database(settings, folder, db_url, say=lines.append)
        assert report.ok and report.kept_as and report.kept_as.startswith(f"{db_name}_pre_restore_")
        assert count(db_url, "trades") == 300 and count(db_url, "accounts") == 500
        assert count(db_url, 'audit."Weird Name"') == 3
        with psycopg.connect(db_url) as conn:
            assert conn.execute("SELECT count(tags) FROM accounts").fetchone() == (500,)
        old = pg_server.url_for(report.kept_as)
        assert count(old, "trades") == 0  # the previous data is kept, not dropped
        assert log.read_text().splitlines() == ["stop", "start"]
        assert health.hits >= 1
        steps = [s["step"] for s in report.steps]
        assert steps == ["verify", "stop_app", "restore", "compare", "database settings", "swap", "start_app",
                         "health"]
        recorded = json.loads((folder / "restores.json").read_text())
        assert recorded[-1]["ok"] and recorded[-1]["kept_as"] == report.kept_as
        assert databases(pg_server.admin_url, f"{db_name}_restoring_%") == []
    finally:
        _cleanup(pg_server.admin_url, f"{db_name}_pre_restore_")


def test_corrupted_dump_is_caught_before_anything_is_touched(
    pg_server: Any, db_name: str, db_url: str, tmp_path: Path
) -> None:
    seed(db_url)
    settings = make_settings(tmp_path, db_url, pg_server)
    folder = take_backup(settings, db_url).backup.path
    dump = folder / "dump.pgdump"
    dump.write_bytes(dump.read_bytes()[:-200])
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM trades WHERE id > 100")
    settings, log = _hooks(tmp_path, settings, None)
    with pytest.raises(RestoreFailed) as info:
        restore_database(settings, folder, db_url)
    assert "not touched" in str(info.value) and info.value.exit_code == 14
    assert not log.exists()  # the app was never stopped
    assert count(db_url, "trades") == 100
    assert databases(pg_server.admin_url, f"{db_name}_%") == []
    with pytest.raises(RestoreFailed, match="The table was not touched") as one:  # nor by a one-table restore
        restore_table(settings, folder, "trades", db_url)
    assert one.value.exit_code == 14 and count(db_url, "trades") == 100


def test_failed_count_check_leaves_live_as_it_was(
    pg_server: Any, db_name: str, db_url: str, tmp_path: Path
) -> None:
    seed(db_url)
    settings = make_settings(tmp_path, db_url, pg_server)
    folder = take_backup(settings, db_url).backup.path
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM trades WHERE id > 100")
    # The stop hook runs after the full verification: it changes the manifest's expected count,
    # so the count comparison on the restored copy (step 4) fails.
    tamper = (f"; import json; p={str(folder / 'manifest.json')!r}; m=json.load(open(p)); "
              "[t.update(rows=t['rows'] + 7) for t in m['tables'] if t['name'] == 'trades']; "
              "json.dump(m, open(p, 'w'))")
    settings, log = _hooks(tmp_path, settings, None, stop_extra=tamper)
    with pytest.raises(RestoreFailed) as info:
        restore_database(settings, folder, db_url)
    assert "307" in str(info.value) and "not touched" in str(info.value)
    assert count(db_url, "trades") == 100
    assert log.read_text().splitlines() == ["stop", "start"]  # the app is started again
    assert databases(pg_server.admin_url, f"{db_name}_%") == []
    recorded = json.loads((folder / "restores.json").read_text())
    assert recorded[-1]["ok"] is False and recorded[-1]["kept_as"] is None
    steps = {s["step"]: s["ok"] for s in recorded[-1]["steps"]}
    assert steps["restore"] is True and steps["compare"] is False


@pytest.mark.parametrize("large", [False, True], ids=["hashed", "large-unverified"])
def test_restore_one_table_in_one_transaction(pg_server: Any, db_url: str, tmp_path: Path, large: bool) -> None:
    seed(db_url)
    settings, folder = _large_unverified(tmp_path, db_url, pg_server, large)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE trades SET qty = 0 WHERE id <= 10")
        conn.execute("DELETE FROM trades WHERE id > 250")
    report = restore_table(settings, folder, "trades", db_url)
    assert report.rows == 300 and report.kept_as.startswith("public.trades_pre_restore_")
    assert count(db_url, "trades") == 300
    assert count(db_url, report.kept_as) == 250
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM trades WHERE qty = 0").fetchone() == (0,)
    with pytest.raises(RestoreFailed):
        restore_table(settings, folder, "no_such_table", db_url)


def test_cli_requires_yes_when_not_interactive(pg_server: Any, db_name: str, db_url: str, tmp_path: Path) -> None:
    seed(db_url, rows=20)
    settings = make_settings(tmp_path, db_url, pg_server)
    folder = take_backup(settings, db_url).backup.path
    runner = CliRunner()
    out = runner.invoke(cli, ["restore", str(folder), "-d", db_url])
    assert out.exit_code == 2 and "--yes" in out.output
    assert databases(pg_server.admin_url, f"{db_name}_%") == []
    try:
        out = runner.invoke(cli, ["restore", str(folder), "-d", db_url, "--yes", "--json"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.output)["ok"] is True
    finally:
        _cleanup(pg_server.admin_url, f"{db_name}_pre_restore_")


def test_health_failure_after_swap_is_reported_with_the_kept_database(
    pg_server: Any, db_name: str, db_url: str, tmp_path: Path
) -> None:
    seed(db_url, rows=30)
    settings = make_settings(tmp_path, db_url, pg_server)
    folder = take_backup(settings, db_url).backup.path
    sick = HealthServer(503)
    settings, _ = _hooks(tmp_path, settings, sick.url, health_timeout="1s")
    try:
        with pytest.raises(RestoreFailed) as info:
            restore_database(settings, folder, db_url)
        message = str(info.value)
        assert "health" in message and f"{db_name}_pre_restore_" in message
        assert f"completed the swap, but: health: {sick.url} did not answer 2xx within 1s" in message
        assert "verify" not in message  # only the failed step is named
        assert count(db_url, "accounts") == 30  # the swap happened; the data is the backup's
        assert sick.hits >= 1
    finally:
        sick.close()
        _cleanup(pg_server.admin_url, f"{db_name}_pre_restore_")


def test_restored_table_sequences_move_past_the_restored_keys(pg_server: Any, db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text)")
        conn.execute("CREATE TABLE tags (id serial PRIMARY KEY, name text)")
        conn.execute("INSERT INTO events (note) SELECT 'e' || g FROM generate_series(1, 10) g")
        conn.execute("INSERT INTO tags (name) SELECT 't' || g FROM generate_series(1, 5) g")
    settings = make_settings(tmp_path, db_url, pg_server)
    folder = take_backup(settings, db_url).backup.path
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE events ALTER COLUMN id RESTART WITH 1")  # behind the backup's keys
        conn.execute("INSERT INTO tags (name) SELECT 'later' FROM generate_series(1, 20)")  # ahead of them
    restore_table(settings, folder, "events", db_url)
    restore_table(settings, folder, "tags", db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        new_event = conn.execute("INSERT INTO events (note) VALUES ('next') RETURNING id").fetchone()
        new_tag = conn.execute("INSERT INTO tags (name) VALUES ('next') RETURNING id").fetchone()
    assert new_event == (11,)  # moved forward past the restored ids
    assert new_tag == (26,)  # never moved backwards


def _backup_with_database_settings(pg_server: Any, db_name: str, db_url: str, tmp_path: Path, role: str,
                                   statements: list[str]) -> tuple[Any, Path]:
    """Seed, create ``role``, run the database-level ``statements`` ({db}, {role}), back up."""
    seed(db_url, rows=20)
    ident = psycopg.sql.Identifier
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE ROLE {}").format(ident(role)))
        for statement in statements:
            conn.execute(psycopg.sql.SQL(statement).format(db=ident(db_name), role=ident(role)))
    settings = make_settings(tmp_path, db_url, pg_server)
    return settings, take_backup(settings, db_url).backup.path


def test_database_level_settings_comment_and_grants_follow_the_restore(
    pg_server: Any, db_name: str, db_url: str, tmp_path: Path
) -> None:
    role = f"{db_name}_reader"
    ident = psycopg.sql.Identifier
    settings, folder = _backup_with_database_settings(pg_server, db_name, db_url, tmp_path, role, [
        "ALTER DATABASE {db} SET search_path = audit, public",
        "ALTER DATABASE {db} CONNECTION LIMIT 40",
        "COMMENT ON DATABASE {db} IS 'trading data; restored by pgshift'",
        "REVOKE CONNECT ON DATABASE {db} FROM PUBLIC",
        "GRANT CONNECT ON DATABASE {db} TO {role}",
        "ALTER ROLE {role} IN DATABASE {db} SET statement_timeout = '7s'",
        "GRANT SELECT ON accounts TO {role}", "ALTER TABLE trades OWNER TO {role}"])  # and the tables' own
    try:
        report = restore_database(settings, folder, db_url)
        assert report.ok
        with psycopg.connect(db_url) as conn:  # the restored database: pg_restore kept owners and grants
            assert conn.execute("SELECT has_table_privilege(%s, 'accounts', 'SELECT'), pg_get_userbyid(relowner) "
                                "FROM pg_class WHERE oid = 'trades'::regclass", (role,)).fetchone() == (True, role)
        with psycopg.connect(pg_server.admin_url) as conn:
            row = conn.execute(
                """SELECT d.datconnlimit, shobj_description(d.oid, 'pg_database'),
                          has_database_privilege('public', d.oid, 'CONNECT'),
                          has_database_privilege(%s, d.oid, 'CONNECT'),
                          (SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole = 0),
                          (SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
                           WHERE s.setdatabase = d.oid AND r.rolname = %s)
                   FROM pg_database d WHERE d.datname = %s""", (role, role, db_name)).fetchone()
        assert row == (40, "trading data; restored by pgshift", False, True, ["search_path=audit, public"],
                       ["statement_timeout=7s"])
    finally:
        _cleanup(pg_server.admin_url, f"{db_name}_pre_restore_")
        with psycopg.connect(db_url, autocommit=True) as conn:  # the table it owns and its grant
            conn.execute(psycopg.sql.SQL("DROP OWNED BY {}").format(ident(role)))
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP OWNED BY {}").format(ident(role)))
            conn.execute(psycopg.sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(ident(db_name), ident(role)))
            conn.execute(psycopg.sql.SQL("DROP ROLE {}").format(ident(role)))


def test_a_grant_to_a_role_that_is_gone_stops_the_restore_before_the_swap(
    pg_server: Any, db_name: str, db_url: str, tmp_path: Path
) -> None:
    role = f"{db_name}_gone"
    ident = psycopg.sql.Identifier
    settings, folder = _backup_with_database_settings(pg_server, db_name, db_url, tmp_path, role,
                                                      ["GRANT CONNECT ON DATABASE {db} TO {role}"])
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(ident(db_name), ident(role)))
        conn.execute(psycopg.sql.SQL("DROP ROLE {}").format(ident(role)))
        conn.execute("DELETE FROM trades")
    with pytest.raises(RestoreFailed) as info:
        restore_database(settings, folder, db_url)
    message = str(info.value)
    assert "database's own settings" in message and role in message and "was not touched" in message
    assert count(db_url, "trades") == 0  # the live database is as it was
    assert databases(pg_server.admin_url, f"{db_name}_restoring_%") == []
    assert databases(pg_server.admin_url, f"{db_name}_pre_restore_%") == []


def test_the_swap_ends_the_live_sessions_keeps_them_out_and_keeps_the_live_locale(
    pg_server: Any, db_name: str, tmp_path: Path
) -> None:
    """An application that was not stopped keeps reconnecting: the live database is closed to new
    sessions while its sessions are ended, so the swap happens at once. The copy is made with the
    live database's encoding, collation and character type, not the server's defaults."""
    live = f"{db_name}_locale"
    ident = psycopg.sql.Identifier
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' "
                                      "LC_CTYPE 'C.utf8'").format(ident(live)))
    url = pg_server.url_for(live)
    stop = threading.Event()

    def app() -> None:
        while not stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as c:
                    while not stop.is_set():
                        c.execute("SELECT 1")
                        time.sleep(0.02)
            except psycopg.OperationalError:
                time.sleep(0.02)

    threads = [threading.Thread(target=app) for _ in range(3)]
    try:
        seed(url, rows=20)
        # No wait beyond the one second every session gets to end.
        settings = dataclasses.replace(make_settings(tmp_path, url, pg_server), lock_wait=Duration.parse("0ms"))
        folder = take_backup(settings, url).backup.path
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(_sessions(pg_server.admin_url, live)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        report = restore_database(settings, folder, url=url)
        assert report.ok and report.kept_as
        with psycopg.connect(pg_server.admin_url) as conn:
            row = conn.execute("SELECT pg_encoding_to_char(encoding), datcollate, datctype, datallowconn "
                               "FROM pg_database WHERE datname = %s", (live,)).fetchone()
        assert row == ("UTF8", "C", "C.utf8", True)
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join()
        _cleanup(pg_server.admin_url, live)


def _sessions(admin_url: str, database: str) -> list[int]:
    with psycopg.connect(admin_url) as conn:
        return [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))]


def test_a_dump_damaged_after_verification_fails_the_restore_and_drops_the_copy(
    pg_server: Any, db_name: str, db_url: str, tmp_path: Path
) -> None:
    seed(db_url, rows=20)
    settings = make_settings(tmp_path, db_url, pg_server)
    folder = take_backup(settings, db_url).backup.path
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM trades")
    # The stop hook runs after the verification: here it cuts the dump in half.
    damage = (f"; p={str(folder / 'dump.pgdump')!r}; d=open(p, 'rb').read(); "
              "open(p, 'wb').write(d[: len(d) // 2])")
    settings, log = _hooks(tmp_path, settings, None, stop_extra=damage)
    with pytest.raises(RestoreFailed) as info:
        restore_database(settings, folder, db_url)
    assert f"The live database {db_name} was not touched." in str(info.value)
    assert count(db_url, "trades") == 0
    assert log.read_text().splitlines() == ["stop", "start"]
    assert databases(pg_server.admin_url, f"{db_name}_%") == []  # the partial copy was dropped
    steps = {s["step"]: s["ok"] for s in json.loads((folder / "restores.json").read_text())[-1]["steps"]}
    assert steps["verify"] is True and steps["restore"] is False


def test_restore_table_refuses_other_content_and_reports_an_empty_table(
    pg_server: Any, db_url: str, tmp_path: Path
) -> None:
    seed(db_url, rows=20)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE nothing_yet (id int PRIMARY KEY)")
    settings = make_settings(tmp_path, db_url, pg_server)
    folder = take_backup(settings, db_url).backup.path
    started = time.monotonic()
    report = restore_table(settings, folder, "nothing_yet", db_url)
    assert report.rows == 0 and 0 < report.seconds < time.monotonic() - started
    recorded = json.loads((folder / "restores.json").read_text())
    assert recorded[-1]["table"] == "public.nothing_yet" and recorded[-1]["rows"] == 0
    # Same row count, other content: the manifest's hash of trades no longer matches the archive's rows.
    data = json.loads((folder / "manifest.json").read_text())
    for table in data["tables"]:
        if table["name"] == "trades":
            table["content_hash"] = str(int(table["content_hash"]) + 1)
    (folder / "manifest.json").write_text(json.dumps(data))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE trades SET qty = 0 WHERE id <= 5")
    with pytest.raises(RestoreFailed, match="do not match the manifest"):
        restore_table(settings, folder, "trades", db_url)
    assert count(db_url, "trades WHERE qty = 0") == 5  # rolled back: the table is as it was
    assert count(db_url, "pg_tables WHERE tablename LIKE 'trades_pre_restore_%'") == 0


def test_restoring_a_table_that_is_gone_or_locked_says_what_to_do(pg_server: Any, db_url: str,
                                                                  tmp_path: Path) -> None:
    """`restore --table` fills a table that exists. A dropped one is named as such, with the two ways on
    (create it, then restore its rows; or restore the whole database); a table another session keeps locked
    gives up after lock_timeout, naming it. Nothing is changed in either case."""
    seed(db_url, rows=20)
    settings = dataclasses.replace(make_settings(tmp_path, db_url, pg_server), lock_timeout=Duration.parse("200ms"))
    folder = take_backup(settings, db_url).backup.path
    with psycopg.connect(db_url) as holder:
        holder.execute("LOCK TABLE accounts IN ACCESS SHARE MODE")
        with pytest.raises(RestoreFailed) as locked:
            restore_table(settings, folder, "accounts", db_url)
        holder.rollback()
    assert "gave up waiting for its lock after lock_timeout (200 ms)" in locked.value.message
    assert "raise lock_timeout" in (locked.value.hint or "")
    assert count(db_url, "accounts") == 20
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DROP TABLE accounts CASCADE")
    with pytest.raises(RestoreFailed) as gone:
        restore_table(settings, folder, "accounts", db_url)
    assert "Table public.accounts does not exist in the live database" in gone.value.message
    hint = gone.value.hint or ""
    assert "create the table first" in hint and f"pgshift restore {folder}" in hint
