"""``pgshift restore``: the playbook's automatic rollback, made safe.

1. verify the backup (full); 2. run the stop_app hook; 3. restore into a new database beside
the live one; 4. compare row counts with the manifest; 5. swap names (the live database becomes
``<db>_pre_restore_<timestamp>`` and is kept, never dropped); 6. run the start_app hook and poll
the health URL; 7. record what happened. Any failure before step 5 leaves the live database as it
was (and runs start_app again if stop_app had run).

``restore_table`` restores one table into the live database in one transaction, after copying
the current rows aside into ``<table>_pre_restore_<timestamp>``.
"""

from __future__ import annotations

import getpass
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo, sql
from psycopg import errors as pgerrors

from pgshift.config import Settings
from pgshift.db.connect import connect, drop_database, mask_password, with_dbname
from pgshift.db.history import History
from pgshift.db.lock import lock_holder, lock_key
from pgshift.db.privileges import require_createdb, require_database_owner
from pgshift.errors import BackupFailed, DatabaseClosed, DiskFull, PgshiftError, RestoreFailed, server_message
from pgshift.safety.copydata import is_copy_header
from pgshift.safety.dbprops import apply_properties, archived_properties
from pgshift.safety.hooks import poll_health, run_hook
from pgshift.safety.manifest import HASHED, Manifest, now_iso, pin_settings, read_manifest, record_restore, table_stat
from pgshift.safety.sequences import archived_sequences, compare_sequences
from pgshift.safety.tools import CLIENT_ENCODING, child_env, database_codec, die_with_parent, out_of_space
from pgshift.safety.verify import (
    NEW_BACKUP_HINT,
    RESTORE_HERE_HINT,
    RESTORE_HINT,
    compare_tables,
    restore_into,
    restore_tool,
    verify_backup,
)

Say = Callable[[str], None]
# Called with the restored copy's URL and the name the live database will be kept as, after the copy was
# checked and before the swap: the last moment to write into the copy (a deploy records its failure there).
BeforeSwap = Callable[[str, str], None]


@dataclass
class RestoreReport:
    backup: str
    database: str
    started_at: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    kept_as: str | None = None
    ok: bool = False
    finished_at: str | None = None

    def step(self, name: str, ok: bool, detail: str, say: Say | None = None) -> None:
        self.steps.append({"step": name, "ok": ok, "detail": detail, "at": now_iso()})
        if say:
            say(f"{'ok' if ok else 'FAILED'}  {name}: {detail}")

    def as_dict(self) -> dict[str, Any]:
        return {"backup": self.backup, "database": self.database, "started_at": self.started_at,
                "finished_at": self.finished_at, "ok": self.ok, "kept_as": self.kept_as, "steps": self.steps}


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")


def _name(base: str, suffix: str) -> str:
    """``base + suffix`` within PostgreSQL's 63-byte identifier limit."""
    room = 63 - len(suffix.encode())
    return base.encode()[:room].decode(errors="ignore") + suffix


def maintenance_url(url: str, live: str) -> str:
    """A connection to another database on the same server, to rename the live one."""
    for candidate in ("postgres", "template1"):
        if candidate != live:
            try:
                with connect(with_dbname(url, candidate), application_name="pgshift-restore"):
                    return with_dbname(url, candidate)
            except PgshiftError:
                continue
    raise RestoreFailed(f"Cannot connect to the postgres or template1 database to rename {live}.")


def restore_database(settings: Settings, backup: str | Path, url: str | None = None, *,
                     say: Say | None = None, before_swap: BeforeSwap | None = None) -> RestoreReport:
    """Restore the whole database from ``backup`` beside the live one and swap them."""
    url = url or settings.database_url or ""
    folder = Path(backup)
    reopened = reopen_after_interrupted_swap(url)
    with connect(url, application_name="pgshift-restore") as conn:
        live = str(conn.execute("SELECT current_database()").fetchone()[0])  # type: ignore[index]
        require_createdb(conn, f"Restoring {live} creates a new database beside it and",
                         instead="restore single tables into the live database with `pgshift restore --table`")
        require_database_owner(conn, f"Restoring {live} renames it to keep it, and so")
    report = RestoreReport(str(folder), live, now_iso())
    if reopened:
        report.step("leftover", True, reopened, say)
    try:
        with connect(maintenance_url(url, live), application_name="pgshift-restore") as guard:
            _claim(guard, live)  # held until the restore ends; the server drops it if we are killed
            _drop_leftovers(guard, live, report, say)
            _restore(settings, folder, url, live, report, say, before_swap)
        report.ok = all(s["ok"] for s in report.steps)
    finally:
        report.finished_at = now_iso()
        if (folder / "manifest.json").exists():
            record_restore(folder, report.as_dict())
    if not report.ok:
        failed = [s for s in report.steps if not s["ok"]]
        raise RestoreFailed(
            f"The restore of {live} from {folder} completed the swap, but: "
            + "; ".join(f"{s['step']}: {s['detail']}" for s in failed)
            + f". The previous data is kept as database {report.kept_as}."
        )
    return report


def _restoring_pattern(live: str) -> re.Pattern[str]:
    prefix = _name(live, "_restoring_00000000000000")[: -len("00000000000000")]
    return re.compile(re.escape(prefix) + r"\d{14}")


def reopen_after_interrupted_swap(url: str) -> str | None:
    """Re-open the live database when a restore killed in its swap left it closed to new sessions
    (ALLOW_CONNECTIONS false, its restored copy still beside it); what was done, or None.

    A database closed by anyone else (no restore copy beside it) stays closed: the connection error
    below says so."""
    try:
        with connect(url, application_name="pgshift-restore"):
            return None
    except DatabaseClosed:
        pass
    params = conninfo.conninfo_to_dict(url)
    live = str(params.get("dbname") or os.environ.get("PGDATABASE") or params.get("user")
               or os.environ.get("PGUSER") or getpass.getuser())
    with connect(maintenance_url(url, live), application_name="pgshift-restore") as guard:
        _claim(guard, live)  # a running restore's swap is not ours to undo
        try:
            rows = guard.execute("SELECT datname, datallowconn FROM pg_database").fetchall()
            closed = any(str(n) == live and not a for n, a in rows)
            copies = sorted(str(n) for n, _ in rows if _restoring_pattern(live).fullmatch(str(n)))
            if not closed or not copies:
                return None
            guard.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(live)))
        finally:
            guard.execute("SELECT pg_advisory_unlock(%s)", (lock_key(f"restore:{live}"),))
    return (f"re-opened {live} to new sessions: a restore killed during its swap had closed it (its copy "
            f"{copies[-1]} is dropped next; {live} still holds its own data)")


def _claim(guard: psycopg.Connection[Any], live: str) -> None:
    """One restore of ``live`` at a time, so leftovers found below cannot belong to a running one."""
    key = lock_key(f"restore:{live}")
    row = guard.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    if row and row[0]:
        return
    holder = lock_holder(guard, key)
    raise RestoreFailed(
        f"Another restore of {live} is running ({holder.describe() if holder else 'it has just ended'}). "
        f"Nothing was done; the live database {live} was not touched.",
        hint="wait for it to finish, then run the restore again if still needed.")


def _drop_leftovers(guard: psycopg.Connection[Any], live: str, report: RestoreReport, say: Say | None) -> None:
    """Drop the half-restored copies a killed restore left beside ``live`` (never the live one,
    nor the ``_pre_restore_`` databases kept on purpose)."""
    pattern = _restoring_pattern(live)
    kept = re.compile(re.escape(_name(live, "_pre_restore_00000000000000")[: -len("00000000000000")]) + r"\d{14}")
    rows = guard.execute("SELECT datname, datallowconn FROM pg_database ORDER BY datname").fetchall()
    for name, allowed in ((str(n), bool(a)) for n, a in rows):
        if pattern.fullmatch(name):
            drop_database(guard, name)
            report.step("leftover", True, f"dropped database {name}, the partial copy an interrupted restore "
                        f"left behind (the live database {live} was not touched by it)", say)
        elif kept.fullmatch(name) and not allowed:  # killed between the swap and re-opening the kept copy
            guard.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(name)))
            report.step("leftover", True, f"re-opened {name}, the previous data an interrupted restore kept, to "
                        "new sessions", say)


def _restore(settings: Settings, folder: Path, url: str, live: str, report: RestoreReport,
             say: Say | None, before_swap: BeforeSwap | None = None) -> None:
    try:
        verify = verify_backup(folder, full=True, url=url, bindir=settings.backup.pg_bindir,
                               jobs=settings.backup.jobs)
    except DiskFull as exc:
        report.step("verify", False, exc.message, say)
        raise _disk_full(f"{exc.message} Nothing was restored", live) from exc
    except BackupFailed as exc:
        report.step("verify", False, exc.message, say)
        # A damaged backup: another one; one that does not restore on this server: what its hint says.
        hint = ("choose another backup (`pgshift backup list`)." if exc.hint in (None, NEW_BACKUP_HINT)
                else RESTORE_HERE_HINT if exc.hint == RESTORE_HINT else exc.hint)
        raise RestoreFailed(f"{exc.message} Nothing was restored; the live database {live} was not touched.",
                            hint=hint) from exc
    report.step("verify", True, "; ".join(verify.passed), say)
    stopped = _hook(settings.app.stop_command, "stop_app", report, say)
    stamp = _stamp()
    new_db = _name(live, f"_restoring_{stamp}")
    admin_url = maintenance_url(url, live)
    kept_as = _name(live, f"_pre_restore_{stamp}")
    try:
        _restore_beside(settings, folder, url, admin_url, live, new_db, report, say)
        if before_swap is not None:
            try:
                before_swap(with_dbname(url, new_db), kept_as)
            except BaseException:
                with connect(admin_url, application_name="pgshift-restore") as admin:
                    drop_database(admin, new_db)
                raise
    except BaseException:
        if stopped:
            _hook(settings.app.start_command, "start_app (the live database was not touched)", report, say)
        raise
    report.kept_as = kept_as
    _swap(admin_url, live, new_db, report.kept_as, settings)
    report.step("swap", True, f"{live} is the restored database; the previous one is kept as {report.kept_as}",
                say)
    _hook(settings.app.start_command, "start_app", report, say)
    if settings.app.health_url:
        timeout = settings.app.health_timeout.seconds
        health = poll_health(settings.app.health_url, timeout)
        detail = f"{health.url} answered {health.status} after {health.seconds:.1f}s" if health.ok else (
            f"{health.url} did not answer 2xx within {timeout:.0f}s (last: {health.error})")
        report.step("health", health.ok, detail, say)
    _log_event(url, report)


def _disk_full(what: str, live: str) -> DiskFull:
    return DiskFull(
        f"{what.rstrip('.')}; the live database {live} was not touched.",
        hint=f"free space on the database server: a restore needs room for the scratch copy its verification makes, "
             f"then for the restored copy beside {live} until the swap (about twice the database's size).")


def _hook(argv: list[str], name: str, report: RestoreReport, say: Say | None) -> bool:
    """Run a configured hook; False when none is configured. A failing stop hook stops the restore."""
    if not argv:
        return False
    result = run_hook(name.split(" ")[0], argv)
    report.step(name, result.ok, result.describe() if not result.ok else
                f"{' '.join(argv)} ({len(result.output)} line(s) of output logged)", say)
    if not result.ok and name == "stop_app":
        raise RestoreFailed(f"{result.describe()}. Nothing was restored; the live database was not touched.")
    return True


def _restore_beside(settings: Settings, folder: Path, url: str, admin_url: str, live: str, new_db: str,
                    report: RestoreReport, say: Say | None) -> None:
    manifest = read_manifest(folder)
    with connect(admin_url, application_name="pgshift-restore") as admin:
        row = admin.execute(
            "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype "
            "FROM pg_database WHERE datname = %s", (live,)).fetchone()
        assert row is not None
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {} LC_COLLATE {} "
                              "LC_CTYPE {}").format(sql.Identifier(new_db), sql.Identifier(row[0]),
                                                    sql.Literal(row[1]), sql.Literal(row[2]),
                                                    sql.Literal(row[3])))
        try:
            restore_into(folder, manifest, restore_tool(manifest, settings.backup.pg_bindir), url, new_db,
                         jobs=settings.backup.jobs, scratch=False)
            report.step("restore", True, f"restored into new database {new_db}", say)
            with connect(with_dbname(url, new_db), application_name="pgshift-restore") as conn:
                problems = compare_tables(conn, read_manifest(folder), hashes=False)
                problems += compare_sequences(conn, archived_sequences(
                    folder / manifest.dump, restore_tool(manifest, settings.backup.pg_bindir)))
            if problems:
                report.step("compare", False, "; ".join(problems), say)
                raise RestoreFailed(
                    f"The restored copy does not match the backup: {'; '.join(problems)}. The copy was "
                    f"dropped; the live database {live} was not touched.")
            report.step("compare", True, f"row counts of {len(manifest.tables)} table(s) match the manifest", say)
            _carry_properties(admin, folder, manifest, settings, new_db, live, report, say)
        except BackupFailed as exc:
            report.step("restore", False, exc.message, say)
            drop_database(admin, new_db)
            if out_of_space(exc.message):
                raise _disk_full(f"The disk filled up while restoring beside {live}: {exc.message} The copy "
                                 "was dropped", live) from exc
            raise RestoreFailed(f"{exc.message} The live database {live} was not touched.") from exc
        except BaseException:
            drop_database(admin, new_db)
            raise


def _carry_properties(admin: psycopg.Connection[Any], folder: Path, manifest: Manifest, settings: Settings,
                      new_db: str, live: str, report: RestoreReport, say: Say | None) -> None:
    """The archive's ALTER DATABASE SET, connection limit, per-role settings, comment and grants,
    applied to the new database before it replaces the live one."""
    tool = restore_tool(manifest, settings.backup.pg_bindir)
    statements = archived_properties(folder / manifest.dump, tool, manifest.database)
    try:
        applied = apply_properties(admin, statements, new_db)
    except psycopg.Error as exc:
        detail = mask_password(" ".join(str(exc).split()))
        report.step("database settings", False, detail, say)
        raise RestoreFailed(
            f"Could not carry the database's own settings to {new_db}: {detail}. The copy was dropped; the "
            f"live database {live} was not touched.",
            hint="create the missing role, or restore as a role allowed to make this change (ALTER ROLE ... "
            "IN DATABASE needs CREATEROLE or superuser), then restore again.") from exc
    report.step("database settings", True, f"{len(applied)} database-level statement(s) carried over"
                + (f": {'; '.join(applied)}" if applied else ""), say)


def _swap(admin_url: str, live: str, new_db: str, kept_as: str, settings: Settings) -> None:
    """Close the live database to new sessions, end the remaining ones, rename both at once."""
    with connect(admin_url, application_name="pgshift-restore") as admin:
        allowed = admin.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (live,)).fetchone()
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(live)))
        try:
            _terminate(admin, live, timeout=settings.lock_wait.seconds)
            with admin.transaction():
                admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(live), sql.Identifier(kept_as)))
                admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(new_db), sql.Identifier(live)))
        except BaseException as exc:
            admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(live)))
            drop_database(admin, new_db)
            denied = isinstance(exc, psycopg.errors.InsufficientPrivilege)
            raise RestoreFailed(f"Could not swap {new_db} in for {live}: {mask_password(server_message(exc))}. The "
                                f"live database {live} was not changed.",
                                hint="stop the application first (app.stop_command), or have an administrator GRANT "
                                "pg_signal_backend to this role so it may end other roles' sessions (a superuser's "
                                "only a superuser may end), then restore again." if denied else None) from exc
        if allowed and allowed[0]:
            admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                sql.Identifier(kept_as)))


def _terminate(admin: psycopg.Connection[Any], database: str, timeout: float) -> None:
    deadline = time.monotonic() + max(timeout, 1.0)
    while True:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)).fetchone()
        if not row or row[0] == 0:
            return
        if time.monotonic() > deadline:
            raise RestoreFailed(f"{row[0]} session(s) on {database} did not end within {timeout:.0f}s.")
        time.sleep(0.1)


def _log_event(url: str, report: RestoreReport) -> None:
    """Add the restore to the restored database's own event log when it has a pgshift ledger."""
    try:
        with connect(url, application_name="pgshift-restore") as conn:
            history = History(conn)
            if history.exists():
                history.log(None, "restored", report.as_dict())
    except (PgshiftError, psycopg.Error):
        pass


# -- one table ------------------------------------------------------------------------------
@dataclass
class TableRestoreReport:
    backup: str
    table: str
    rows: int
    kept_as: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"backup": self.backup, "table": self.table, "rows": self.rows, "kept_as": self.kept_as,
                "seconds": round(self.seconds, 3)}


def split_table(name: str) -> tuple[str, str]:
    schema, _, table = name.rpartition(".")
    return (schema or "public").strip('"'), table.strip('"')


def _copy_stream(lines: Iterator[bytes]) -> tuple[bytes, bytes | None, Iterator[bytes]]:
    """The COPY statement pg_restore prints for a table's data, the encoding the script declares
    (the database's), and the data lines after it, as bytes."""
    encoding: bytes | None = None
    for line in lines:
        if match := CLIENT_ENCODING.match(line):
            encoding = match.group(1)
        elif is_copy_header(line):
            header = line.rstrip()[: -len(b" FROM stdin;")] + b" FROM STDIN"

            def data() -> Iterator[bytes]:
                for row in lines:
                    if row.rstrip(b"\n") == b"\\.":
                        return
                    yield row

            return header, encoding, data()
    raise RestoreFailed("The archive has no data for this table.")


_OWNED_SEQUENCES = """
    SELECT s.oid::regclass::text, a.attname
    FROM pg_depend d
    JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
    WHERE d.classid = 'pg_class'::regclass AND d.refobjid = format('%%I.%%I', %s::text, %s::text)::regclass
      AND d.deptype IN ('a', 'i')
"""


def _advance_owned_sequences(conn: psycopg.Connection[Any], schema: str, name: str) -> None:
    """Move the table's serial/identity sequences past the restored keys (never backwards), so the
    next insert does not collide with a restored row."""
    for sequence, column in conn.execute(_OWNED_SEQUENCES, (schema, name)).fetchall():
        conn.execute(
            sql.SQL(
                "SELECT setval({seq}::regclass, greatest(m.top, coalesce(pg_sequence_last_value({seq}::regclass), 0)))"
                " FROM (SELECT max({col})::bigint AS top FROM {table}) AS m WHERE m.top IS NOT NULL"
            ).format(seq=sql.Literal(sequence), col=sql.Identifier(column), table=sql.Identifier(schema, name))
        )


def restore_table(settings: Settings, backup: str | Path, table: str, url: str | None = None) -> TableRestoreReport:
    """Replace one table's rows with the backup's, in one transaction on the live database."""
    url = url or settings.database_url or ""
    folder = Path(backup)
    started = time.monotonic()
    try:
        verify_backup(folder, full=False, bindir=settings.backup.pg_bindir)
    except BackupFailed as exc:
        raise RestoreFailed(f"{exc.message} The table was not touched.") from exc
    manifest = read_manifest(folder)
    schema, name = split_table(table)
    expected = manifest.table(f"{schema}.{name}")
    if expected is None:
        raise RestoreFailed(f"The backup {folder} has no table {schema}.{name}; see its manifest.json.")
    kept_as = _name(name, f"_pre_restore_{_stamp()}")
    tool = restore_tool(manifest, settings.backup.pg_bindir)
    # The archive's table of contents holds names in the database's encoding; so must the arguments.
    encoding = database_codec(manifest.encoding)
    argv: list[str | bytes] = [str(tool.path), "--data-only", f"--schema={schema}".encode(encoding, "replace"),
                               f"--table={name}".encode(encoding, "replace"), "--file=-", str(folder / manifest.dump)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env({}),
                            preexec_fn=die_with_parent())
    assert proc.stdout is not None
    target = sql.Identifier(schema, name)
    try:
        with connect(url, application_name="pgshift-restore", autocommit=False) as conn:
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{settings.lock_timeout_ms}ms",))
            conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(target))
            conn.execute(sql.SQL("CREATE TABLE {} AS TABLE {}").format(sql.Identifier(schema, kept_as), target))
            conn.execute(sql.SQL("DELETE FROM {}").format(target))
            header, script_encoding, data = _copy_stream(iter(proc.stdout))
            if script_encoding:  # the rows stay bytes in the database's encoding: the session reads them so
                conn.execute("SELECT set_config('client_encoding', %s, true)", (script_encoding.decode(),))
            with conn.cursor().copy(header) as copy:
                for line in data:
                    copy.write(line)
            pin_settings(conn)
            hashed = expected.check in HASHED
            got = table_stat(conn, schema, name, 0, hash_max_bytes=None if hashed else -1, method=expected.check)
            if got.rows != expected.rows or (hashed and got.content_hash != expected.content_hash):
                conn.rollback()
                raise RestoreFailed(
                    f"The restored rows of {schema}.{name} do not match the manifest ({got.rows} rows, "
                    f"manifest {expected.rows}); the transaction was rolled back and the table is unchanged.")
            _advance_owned_sequences(conn, schema, name)
            conn.commit()
    except pgerrors.UndefinedTable as exc:
        raise RestoreFailed(
            f"Table {schema}.{name} does not exist in the live database: `restore --table` puts a backup's rows "
            "back into a table that is there. Nothing was changed.",
            hint=f"create the table first (`pgshift migrate` runs the migration that makes it), then restore its "
                 f"rows again; or restore the whole database with `pgshift restore {folder}`.") from exc
    except pgerrors.LockNotAvailable as exc:
        raise RestoreFailed(
            f"Restoring table {schema}.{name} gave up waiting for its lock after lock_timeout "
            f"({settings.lock_timeout_ms} ms): another session holds a lock on it. Nothing was changed.",
            hint="retry when traffic is lower, or raise lock_timeout; `pgshift check` lists the sessions that "
                 "hold locks.") from exc
    except psycopg.Error as exc:
        raise RestoreFailed(f"Restoring table {schema}.{name} failed and was rolled back, the table is "
                            f"unchanged: {mask_password(str(exc)).strip()}") from exc
    finally:
        proc.kill()
        proc.wait()
    report = TableRestoreReport(str(folder), f"{schema}.{name}", got.rows or 0, f"{schema}.{kept_as}",
                                time.monotonic() - started)
    record_restore(folder, {"at": now_iso(), **report.as_dict()})
    return report
