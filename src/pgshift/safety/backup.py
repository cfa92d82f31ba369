"""``take_backup``: pg_dump plus a manifest that proves what the dump holds.

The row counts and content hashes are read in the very snapshot pg_dump dumps (the snapshot is
exported by a REPEATABLE READ transaction and handed to pg_dump with ``--snapshot``), so they
match the dump exactly even while the application keeps writing. The counting runs while pg_dump
works, on its own connection. Tables over ``backup.hash_max_mb`` are read only by pg_dump by
default; the verification that follows the dump takes their row counts from the archive.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import psycopg

from pgshift import __version__
from pgshift.config import Settings, duration_ms
from pgshift.db.connect import connect, mask_password
from pgshift.db.history import History
from pgshift.db.privileges import require_readable_tables
from pgshift.errors import BackupFailed, ConnectionFailed, DiskFull, LockHeld, PgshiftError, from_os_error
from pgshift.safety.copydata import TableData, TableKey
from pgshift.safety.follow import ArchiveFollower
from pgshift.safety.manifest import (
    DUMP_OUTPUT_SETTINGS,
    LARGE,
    MANIFEST,
    FileEntry,
    Manifest,
    TableLocked,
    TableStat,
    count_large_objects,
    file_entries,
    now_iso,
    read_manifest,
    table_stats,
    verifications,
    write_private,
)
from pgshift.safety.tools import (
    Tool,
    child_connection,
    child_env,
    die_with_parent,
    ends_with_its_client,
    find_tool,
    lock_waited_on,
    out_of_space,
    server_info,
    session_ended,
)
from pgshift.units import Duration

ProgressFn = Callable[[int, int, str], None]  # (bytes done, bytes total, current table)
_DUMPING = re.compile(r'dumping contents of table "(?P<name>[^"]+)"')
POLICIES = ("always", "destructive-only", "never")
DUMP_TIMEZONE = "UTC"


@dataclass
class Backup:
    """A backup folder: the dump, manifest.json and the verification log."""

    path: Path
    manifest: Manifest

    @property
    def finished_at(self) -> datetime:
        return datetime.fromisoformat(self.manifest.finished_at)

    @property
    def dump_path(self) -> Path:
        return self.path / self.manifest.dump

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.manifest.files)

    def last_verification(self, *, full: bool = False) -> dict[str, Any] | None:
        """The newest successful verification (a full one if ``full``)."""
        ok = [r for r in verifications(self.path) if r.get("ok") and (r.get("level") == "full" or not full)]
        return ok[-1] if ok else None

    @property
    def verified(self) -> bool:
        return self.last_verification() is not None


@dataclass
class BackupResult:
    backup: Backup
    seconds: float
    dump_seconds: float
    tool: Tool
    verification: Any = None  # VerifyReport when verified
    removed: list[Path] = field(default_factory=list)
    incomplete: list[Incomplete] = field(default_factory=list)
    unrecorded: str | None = None  # why the ledger has no record of it, when it has none

    @property
    def megabytes_per_second(self) -> float:
        return self.backup.manifest.database_size_bytes / 1e6 / max(self.dump_seconds, 1e-6)


WRITING = ".pgshift-writing"  # in a backup folder until its manifest is written; flock-ed by the writer


class _WriterMark:
    """Marks a folder as being written by this process, with an flock the kernel drops when the
    process dies: a sweep can then tell a killed backup from one another pgshift is writing."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / WRITING
        staging = folder / (WRITING + ".new")
        self.fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.write(self.fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                      "started_at": now_iso()}).encode())
        os.replace(staging, self.path)  # only a locked mark is ever visible under its name

    def release(self) -> None:
        if self.fd < 0:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = -1


@dataclass
class Incomplete:
    """A backup folder without a manifest: ``removed`` (its writer died), ``in-progress`` (its
    writer is alive) or ``unknown`` (no writer mark: pgshift cannot tell, so it is left alone)."""

    path: Path
    state: str
    writer: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        who = (f"pgshift pid {self.writer.get('pid')} on {self.writer.get('host')}, started "
               f"{self.writer.get('started_at')}") if self.writer else ""
        if self.state == "removed":
            return (f"removed incomplete backup {self.path}: the {who or 'pgshift'} writing it stopped before "
                    "its manifest was written, so it proves nothing")
        if self.state == "in-progress":
            return f"{self.path} is being written by {who}; left alone"
        return (f"{self.path} holds a dump but no manifest and no pgshift writer mark (an older pgshift, or "
                "copied by hand); it is not a usable backup. Remove it by hand once nothing writes to it")


def _read_mark(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.read(fd, 4096) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def sweep_incomplete(root: Path) -> list[Incomplete]:
    """Find backup folders in ``root`` without a manifest; remove those whose writer has died.

    A folder is removed only when it carries pgshift's writer mark and the mark's lock is free:
    the writer holds the lock for as long as it runs, so a backup still being written (by this or
    another host sharing the folder, where flock works) is never touched."""
    found: list[Incomplete] = []
    if not root.is_dir():
        return found
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        mark = folder / WRITING
        has_manifest = (folder / MANIFEST).is_file()
        if not mark.is_file():
            if not has_manifest and any((folder / d).exists() for d in ("dump", "dump.pgdump")):
                found.append(Incomplete(folder, "unknown"))
            continue
        try:
            fd = os.open(mark, os.O_RDONLY)
        except FileNotFoundError:
            continue  # finished (or swept) just now
        try:
            writer = _read_mark(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not has_manifest:
                    found.append(Incomplete(folder, "in-progress", writer))
                continue
            if has_manifest:  # complete; the writer died between the manifest and removing its mark
                mark.unlink(missing_ok=True)
                continue
            shutil.rmtree(folder, ignore_errors=True)
            found.append(Incomplete(folder, "removed", writer))
        finally:
            os.close(fd)
    return found


def backup_dir(settings: Settings, directory: str | Path | None = None) -> Path:
    return settings.resolve(str(directory)) if directory else settings.resolve(settings.backup.directory)


def _new_folder(root: Path, database: str) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise from_os_error(exc, "creating the backup folder (backup.directory or --to); nothing was dumped") from exc
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", database)
    for n in range(1000):
        folder = root / (f"{safe}-{stamp}" + (f"-{n}" if n else ""))
        try:
            folder.mkdir(mode=0o700)
            return folder
        except FileExistsError:
            continue
        except OSError as exc:
            raise from_os_error(exc, "creating the backup folder; nothing was dumped") from exc
    raise BackupFailed(f"Could not create a new backup folder in {root}.")


def _export_snapshot(conn: psycopg.Connection[Any]) -> str | None:
    """Open the REPEATABLE READ transaction whose snapshot pg_dump and the counts share."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        return str(row[0]) if row else None
    except psycopg.Error:
        conn.rollback()
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return None


def _history_head(conn: psycopg.Connection[Any], schema: str) -> str | None:
    try:
        return History(conn, schema).head()
    except (psycopg.Error, PgshiftError):
        return None


class _DumpProcess:
    """pg_dump running in the background; its --verbose stderr drives the progress display."""

    def __init__(self, argv: list[str], env: dict[str, str], sizes: dict[str, int],
                 progress: ProgressFn | None) -> None:
        self.sizes, self.progress = sizes, progress
        self.total = sum(sizes.values())
        self.done = 0
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=child_env(env), text=True, errors="replace", umask=0o077,  # names in the database's encoding
            preexec_fn=die_with_parent(),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        current: str | None = None
        for line in self.proc.stderr:
            match = _DUMPING.search(line)
            if match:
                if current:
                    self.done += self.sizes.get(current, 0)
                current = match.group("name")
                if self.progress:
                    self.progress(self.done, self.total, current)
            elif "dumping contents" not in line and " reading " not in line:
                self.lines.append(line.rstrip())
        if self.progress:
            self.progress(self.total, self.total, "")

    def wait(self) -> int:
        code = self.proc.wait()
        self._reader.join(timeout=10)
        return code

    def error_text(self) -> str:
        relevant = [ln for ln in self.lines if any(w in ln.lower() for w in ("error", "fatal", "detail:"))] \
            or self.lines
        return mask_password(" | ".join(relevant[-8:]))


def dump_argv(tool: Tool, conninfo: str, target: Path, fmt: str, jobs: int, snapshot: str | None,
              lock_wait_ms: int) -> list[str]:
    argv = [str(tool.path), f"--dbname={conninfo}", f"--file={target}", "--verbose",
            "--format=" + ("directory" if fmt == "directory" else "custom")]
    if fmt == "directory" and jobs > 1:
        argv.append(f"--jobs={jobs}")
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    if lock_wait_ms > 0:
        argv.append(f"--lock-wait-timeout={lock_wait_ms}")
    return argv


def take_backup(
    settings: Settings,
    url: str | None = None,
    *,
    fmt: str | None = None,
    jobs: int | None = None,
    directory: str | Path | None = None,
    keep: int | None = None,
    verify: bool = True,
    progress: ProgressFn | None = None,
    bindir: str | Path | None = None,
    on_child: Callable[[subprocess.Popen[str]], None] | None = None,
) -> BackupResult:
    """Dump the database with pg_dump, write the manifest, verify (quick) and apply retention."""
    url = url or settings.database_url
    fmt = fmt or settings.backup.format
    jobs = jobs or settings.backup.jobs
    if jobs > 1 and fmt != "directory":
        fmt = "directory"  # parallel dumps need the directory format
    started = time.monotonic()
    started_at = now_iso()
    with connect(url, application_name="pgshift-backup") as conn:
        version, major = server_info(conn)
        if major >= 14:  # a killed pgshift's session ends instead of waiting on for a lock
            conn.execute("SET client_connection_check_interval = '1s'")
        database = str(conn.execute("SELECT current_database()").fetchone()[0])  # type: ignore[index]
        db_size, encoding = conn.execute(
            "SELECT pg_database_size(current_database()), pg_encoding_to_char(encoding) FROM pg_database "
            "WHERE datname = current_database()").fetchone()  # type: ignore[misc]
        # reset_val: what a new session of this role gets in this database (pg_dump's session).
        dump_settings = {str(name): str(value) for name, value in conn.execute(
            "SELECT name, reset_val FROM pg_settings WHERE name = ANY(%s)", (list(DUMP_OUTPUT_SETTINGS),))}
        require_readable_tables(conn)  # before any file is written: pg_dump would stop part-way
        tool = find_tool("pg_dump", major, bindir=bindir or settings.backup.pg_bindir)
        incomplete = sweep_incomplete(backup_dir(settings, directory))
        folder = _new_folder(backup_dir(settings, directory), database)
        try:
            mark = _WriterMark(folder)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise from_os_error(exc, "marking the new backup folder; nothing was dumped") from exc
        dump_name = "dump" if fmt == "directory" else "dump.pgdump"
        conninfo, env = child_connection(url or "")
        conn.autocommit = False
        # The pg_restore that reads a single-file archive back while pg_dump writes it.
        restore = _restore_tool(tool, bindir or settings.backup.pg_bindir) if verify and fmt != "directory" else None
        follower: ArchiveFollower | None = None
        try:
            stats, dump_seconds, notes, follower = _dump_and_count(
                conn, settings, tool, conninfo, env, folder / dump_name, fmt, jobs, progress, on_child, restore,
            )
            head = _history_head(conn, settings.history_schema)
            large_objects = count_large_objects(conn)  # in pg_dump's snapshot too
            conn.rollback()
        except BaseException as exc:
            _discard(folder, follower, mark)
            if conn.broken and isinstance(exc, psycopg.OperationalError):
                raise BackupFailed(
                    f"The backup's own session (which holds the snapshot pg_dump reads) was lost while it ran: "
                    f"{mask_password(str(exc)).strip()}. The incomplete backup {folder} was removed.",
                    hint="run `pgshift backup` again; if the session is lost again, look for what ends sessions "
                    "on the server (a restart, or pg_terminate_backend by an administrator or a watchdog).",
                ) from exc
            raise
    _restrict(folder)
    preread = None
    try:
        if restore is not None and follower is not None:  # read back while written; the manifest takes its sha256
            from pgshift.safety.verify import read_back_followed

            preread = read_back_followed(folder / dump_name, restore, follower)
            files = [FileEntry(dump_name, (folder / dump_name).stat().st_size, preread.sha256)]
            _record_copy_digests(stats, preread.tables or {})
        else:
            files = file_entries(folder, dump_name)
    except BaseException:
        _discard(folder, follower, mark)
        raise
    manifest = Manifest(
        database=database, server_version=version, server_major=major, history_head=head, format=fmt,
        dump=dump_name, jobs=jobs, started_at=started_at, finished_at=now_iso(),
        database_size_bytes=int(db_size), tables=stats, files=files,
        tools={"pg_dump": tool.version, "pgshift": __version__}, host=_host_of(url or ""), notes=notes,
        snapshot_shared=not any(n.startswith(_NO_SNAPSHOT) for n in notes), dump_timezone=DUMP_TIMEZONE,
        encoding=str(encoding), dump_settings=dump_settings, large_objects=large_objects,
    )
    try:
        write_private(folder / MANIFEST, manifest.to_json())
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)  # a dump without its manifest proves nothing
        raise from_os_error(exc, "writing the manifest; the incomplete backup was removed") from exc
    finally:
        mark.release()
    result = BackupResult(Backup(folder, manifest), 0.0, dump_seconds, tool, incomplete=incomplete)
    if verify:
        from pgshift.safety.verify import verify_backup

        result.verification = verify_backup(folder, full=False, bindir=bindir or settings.backup.pg_bindir,
                                            preread=preread)
        result.backup = Backup(folder, read_manifest(folder))  # now with the large tables' counts
    keep = settings.backup.keep if keep is None else keep
    if keep:
        result.removed = apply_retention(backup_dir(settings, directory), database, keep, protect=[folder])
    result.unrecorded = record_backup(settings, url or "", result.backup)
    result.seconds = time.monotonic() - started
    return result


def _record_copy_digests(stats: list[TableStat], read: dict[TableKey, TableData]) -> None:
    for table in stats:
        got = read.get((table.schema, table.name))
        if table.check in LARGE and got is not None and got.sha256 is not None:
            table.copy_sha256 = got.sha256


def _restore_tool(dump_tool: Tool, bindir: str | Path | None) -> Tool | None:
    """The pg_restore that reads the new archive back; None leaves the verification to say it is missing
    (after the manifest is written: the dump is kept)."""
    try:
        return find_tool("pg_restore", dump_tool.major, bindir=bindir)
    except BackupFailed:
        return None


_NO_SNAPSHOT = "the server could not export a snapshot"

# The ledger event each backup is recorded as (pgshift.safety.catalog finds them by it).
EVENT = "backup"


def record_backup(settings: Settings, url: str, backup: Backup) -> str | None:
    """Add ``backup`` to the ledger's event log; None when recorded, else why it was not.

    A database without a ledger is left as it is: a backup does not create schemas."""
    last = backup.last_verification()
    detail = {"path": str(backup.path.resolve()), "database": backup.manifest.database,
              "finished_at": backup.manifest.finished_at, "verified": last.get("level") if last else None,
              "size_bytes": backup.size_bytes}
    try:
        with connect(url, application_name="pgshift-backup") as conn:
            history = History(conn, settings.history_schema)
            if not history.exists():
                return (f"the database has no pgshift history in schema {settings.history_schema} yet "
                        "(`pgshift init` or the first migrate creates it)")
            history.log(None, EVENT, detail)
    except (PgshiftError, psycopg.Error) as exc:
        return mask_password(" ".join(str(exc).split()))
    return None


def _dump_and_count(
    conn: psycopg.Connection[Any], settings: Settings, tool: Tool, conninfo: str, env: dict[str, str],
    target: Path, fmt: str, jobs: int, progress: ProgressFn | None,
    on_child: Callable[[subprocess.Popen[str]], None] | None, restore: Tool | None = None,
) -> tuple[list[TableStat], float, list[str], ArchiveFollower | None]:
    notes: list[str] = []
    snapshot = _export_snapshot(conn)
    # This transaction holds pg_dump's snapshot, idle while pg_dump runs, and counts and hashes tables:
    # a database's or role's limits, kept for the application, would end it half-way. Lifted for it
    # alone (SET LOCAL: nothing stays on a pooled server connection), as pg_dump lifts them for itself.
    conn.execute("SELECT set_config('idle_in_transaction_session_timeout', '0', true), "
                 "set_config('statement_timeout', '0', true)")
    if conn.info.server_version >= 170000:
        conn.execute("SELECT set_config('transaction_timeout', '0', true)")
    if snapshot is None:
        notes.append(_NO_SNAPSHOT + "; counts were read in a separate snapshot")
    # From the catalog (relpages), which takes no lock: a locked table must not stall us here.
    pages = {f"{s}.{n}": (int(p), int(b)) for s, n, p, b in conn.execute(
        "SELECT n.nspname, c.relname, c.relpages, current_setting('block_size')::int "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm')"
    ).fetchall()}
    sizes = {name: max(count, 1) * block for name, (count, block) in pages.items()}
    lock_wait_ms = settings.lock_wait.ms
    conninfo = ends_with_its_client(conninfo, conn.info.server_version // 10000)  # its snapshot and locks too
    argv = dump_argv(tool, conninfo, target, fmt, jobs, snapshot, lock_wait_ms)
    t0 = time.monotonic()
    # A fixed time zone makes timestamptz rows print the same when a restored copy is dumped for
    # comparison (the instant stored is the same in any zone).
    child_vars = {**env, "PGTZ": DUMP_TIMEZONE}
    dump = _DumpProcess(argv, child_vars, sizes, progress)
    if on_child:
        on_child(dump.proc)
    # The rows of a table likely to be over hash_max_mb are hashed as they are read back, so that
    # --restore-test need not read the archive again (a table missed here only costs that read). Its
    # size is the catalog's estimate; relpages 0 (never vacuumed or analysed, as after a bulk load) says
    # nothing, so such a table is hashed too.
    likely_large = settings.backup.hash_max_mb * 1024 * 1024 // 4

    def hashed(key: TableKey) -> bool:
        count, block = pages.get(f"{key[0]}.{key[1]}", (0, 0))
        return count == 0 or count * block > likely_large

    follower = ArchiveFollower(target, restore, hashed=hashed) if restore is not None else None
    try:
        stats = _count_while_dumping(conn, settings, dump)
    except BaseException:
        if follower is not None:
            follower.abort()
        raise
    code = dump.wait()
    seconds = time.monotonic() - t0
    if code != 0:
        if follower is not None:
            follower.abort()
        _dump_failed(tool, dump, code, target, settings)
    if follower is not None:
        follower.dump_finished()  # it reads the rest while the manifest is made
    return stats, seconds, notes, follower


def _count_while_dumping(conn: psycopg.Connection[Any], settings: Settings, dump: _DumpProcess) -> list[TableStat]:
    # The manifest pass shares the CPU with pg_dump and its COPY backend: parallel workers and JIT
    # compilation would only add to the total work.
    lock_wait_ms = settings.lock_wait.ms
    conn.execute("SELECT set_config('jit', 'off', true), set_config('max_parallel_workers_per_gather', '0', true)")
    if lock_wait_ms > 0:  # a table someone else holds locked: give up when pg_dump does, not never
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{lock_wait_ms}ms",))
    try:
        stats = table_stats(conn, hash_max_bytes=settings.backup.hash_max_mb * 1024 * 1024,
                            large=settings.backup.large_tables)
    except TableLocked as exc:
        dump.proc.kill()
        dump.wait()
        raise _lock_held(f"table {exc.table}", settings.lock_wait) from exc
    except BaseException:
        dump.proc.kill()
        dump.wait()
        raise
    return stats


def _dump_failed(tool: Tool, dump: _DumpProcess, code: int, target: Path, settings: Settings) -> NoReturn:
    detail = f"pg_dump ({tool.path}, {tool.version}) failed with exit code {code}: {dump.error_text()}"
    locked = lock_waited_on(detail)
    if locked:
        raise _lock_held(f"table {locked}", settings.lock_wait)
    if out_of_space(detail):
        raise DiskFull(f"The disk holding {target.parent} filled up during the backup. {detail}",
                       hint="the partial dump was removed and the database was not changed; free space there "
                            "or set backup.directory (or --to) to a larger disk.")
    if session_ended(detail):
        raise ConnectionFailed(
            f"The server ended pg_dump's connection during the backup (a restart, a shutdown or "
            f"pg_terminate_backend): {detail} Nothing was kept; the database was not changed.",
            hint="check that the server is back (`pgshift status`), then run `pgshift backup` again.")
    raise BackupFailed(detail, hint="nothing was kept; the database was not changed.")


def _lock_held(what: str, lock_wait: Duration) -> LockHeld:
    return LockHeld(
        f"The backup gave up waiting for a lock on {what} after lock_wait ({lock_wait}): another "
        "session holds a conflicting lock on it, such as a migration's ACCESS EXCLUSIVE lock.",
        hint="nothing was kept; `pgshift check` lists sessions that hold locks; raise lock_wait to wait longer.")


def _restrict(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, 0o700 if path.is_dir() else 0o600)


def _host_of(url: str) -> str:
    from pgshift.db.connect import describe_target

    return describe_target(url) if url else "(default)"


# -- finding backups ------------------------------------------------------------------------
def list_backups(root: Path, database: str | None = None) -> list[Backup]:
    """Every backup folder with a readable manifest, newest first."""
    found: list[Backup] = []
    if not root.is_dir():
        return found
    for folder in root.iterdir():
        if not (folder / MANIFEST).is_file():
            continue
        try:
            manifest = read_manifest(folder)
        except BackupFailed:
            continue
        if database is None or manifest.database == database:
            found.append(Backup(folder, manifest))
    return sorted(found, key=lambda b: (b.finished_at, b.path.name), reverse=True)


def _max_age(value: Duration | str | int | float | timedelta | None) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, Duration):
        return value.delta
    return timedelta(milliseconds=duration_ms(value, key="backup.max_age"))


def recorded_backups(conn: psycopg.Connection[Any], schema: str, limit: int = 100) -> list[Backup]:
    """Backups of this database the ledger recorded whose folders still hold a manifest, newest first."""
    database = str(conn.execute("SELECT current_database()").fetchone()[0])  # type: ignore[index]
    found: list[Backup] = []
    for event in History(conn, schema).events_named(EVENT, limit):
        path = Path(str(event["detail"].get("path", "")))
        if event["detail"].get("database") != database or not (path / MANIFEST).is_file():
            continue
        try:
            found.append(Backup(path, read_manifest(path)))
        except BackupFailed:
            continue
    return found


def latest_verified_backup(
    settings: Settings,
    max_age: Duration | str | int | float | timedelta | None = None,
    *,
    database: str | None = None,
    full: bool = False,
    directory: str | Path | None = None,
    conn: psycopg.Connection[Any] | None = None,
) -> Backup | None:
    """The newest backup that passed verification (full if ``full``), no older than ``max_age``
    (a duration such as '24h'; default backup.max_age). With ``conn``: of that connection's
    database, found in backup.directory and among the backups its ledger recorded wherever they
    were written (``pgshift backup --to``), as ``restore latest`` finds them."""
    limit = _max_age(settings.backup.max_age if max_age is None else max_age)
    now = datetime.now(UTC)
    candidates: list[Backup] = []
    if conn is not None:
        row = conn.execute("SELECT current_database()").fetchone()
        database = database or (str(row[0]) if row else None)
        candidates = recorded_backups(conn, settings.history_schema)
    seen = {b.path.resolve() for b in candidates}
    candidates += [b for b in list_backups(backup_dir(settings, directory), database) if b.path.resolve() not in seen]
    candidates.sort(key=lambda b: (b.finished_at, b.path.name), reverse=True)
    for candidate in candidates:
        if limit is not None and now - candidate.finished_at > limit:
            return None  # the rest are older still
        if candidate.last_verification(full=full):
            return candidate
    return None


def apply_retention(root: Path, database: str, keep: int, *, protect: Iterable[Path] = ()) -> list[Path]:
    """Keep the ``keep`` newest verified backups of ``database`` and anything in ``protect``;
    delete its other backups, once there are that many verified ones. Only verified backups
    count: an unverified or half-written folder must never cost a good backup its place."""
    backups = list_backups(root, database)
    verified = [b for b in backups if b.verified]
    if len(verified) < keep:
        return []  # fewer good backups than asked for: nothing is reliable enough to replace another
    keepers = {b.path.resolve() for b in verified[:keep]} | {p.resolve() for p in protect}
    removed: list[Path] = []
    for backup in backups:
        if backup.path.resolve() not in keepers:
            shutil.rmtree(backup.path)
            removed.append(backup.path)
    return removed


Change = TypeVar("Change")


def backup_required(policy: str, migrations: Iterable[Change], is_destructive: Callable[[Change], bool]) -> bool:
    """Whether a forward change (``migrate``'s migrations, a contract, a backfill) must take a backup first
    under backup.policy."""
    pending = list(migrations)
    if policy not in POLICIES:
        raise BackupFailed(f"backup.policy must be one of {', '.join(POLICIES)}, not {policy!r}.")
    if not pending or policy == "never":
        return False
    if policy == "always":
        return True
    return any(is_destructive(m) for m in pending)


def _discard(folder: Path, follower: ArchiveFollower | None, mark: _WriterMark) -> None:
    """A backup that failed or was interrupted: stop reading it back, remove its folder, free its mark."""
    if follower is not None:
        follower.abort()
    shutil.rmtree(folder, ignore_errors=True)
    mark.release()
