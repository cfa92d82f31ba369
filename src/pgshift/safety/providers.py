"""Backup providers: who satisfies backup.policy.

``backup.provider = "pg_dump"`` (the default) is pgshift's own verified dump (:mod:`pgshift.safety.backup`).
Any other provider is a physical backup system the team already runs, because at hundreds of gigabytes a
dump before each migration is impractical. pgshift takes no backup then; it requires one: a completed
backup of this cluster newer than ``backup.max_age`` and, with ``backup.restore_check``, proof that it
restores (into a scratch folder, started on a free port, queried, stopped and removed).

A provider implements :class:`BackupProvider`: list the backups (:meth:`~BackupProvider.inventory`) and
write one into an empty data directory (:meth:`~BackupProvider.restore_into`). Starting and querying the
restored server is shared. WAL-G (``wal-g backup-list --json --detail`` / ``backup-fetch``) or a cloud
snapshot would be one more class in :data:`PROVIDERS`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import psycopg
from psycopg import conninfo

from pgshift.config import Settings
from pgshift.db.connect import mask_password
from pgshift.embedded import free_port
from pgshift.errors import MigrationRefused, PgshiftError
from pgshift.safety.tools import find_tool

Notify = Callable[[str], None]


class NoRecentBackup(MigrationRefused):
    """backup.provider's backup system has no completed backup of this cluster newer than backup.max_age."""

    code = "no-recent-backup"
    exit_code = 37


class BackupProviderFailed(PgshiftError):
    """backup.provider's tool is missing or failed (its backup list, or a restore check of the backup)."""

    code = "backup-provider"
    exit_code = 36


@dataclass(frozen=True)
class PhysicalBackup:
    """One completed backup a provider lists."""

    provider: str
    location: str  # the provider's name for where it lives (pgBackRest: the stanza)
    label: str
    kind: str  # full / diff / incr
    finished_at: datetime
    size_bytes: int | None = None
    system_id: int | None = None  # the cluster's system identifier (pg_control_system())
    pg_major: int | None = None

    @property
    def reference(self) -> str:
        return f"{self.provider}:{self.location}/{self.label}"

    def age(self, now: datetime | None = None) -> timedelta:
        return (now or datetime.now(UTC)) - self.finished_at

    def describe(self, now: datetime | None = None) -> str:
        size = f", {self.size_bytes / 1e6:.1f} MB" if self.size_bytes is not None else ""
        return f"{self.kind} backup {self.label} finished {self.finished_at:%Y-%m-%d %H:%M:%S} UTC " \
               f"({_age_text(self.age(now))} ago{size})"


@dataclass
class Inventory:
    """What a provider found: where it looked, the completed backups (newest first), and why there are none."""

    where: str
    backups: list[PhysicalBackup] = field(default_factory=list)
    note: str | None = None


@dataclass
class RestoreCheck:
    """A restore check that passed: the backup was restored, started and answered a query."""

    backup: PhysicalBackup
    database: str
    tables: int
    seconds: float

    def describe(self) -> str:
        return (f"restore check of {self.backup.reference} passed: restored into a scratch folder, started, and "
                f"database {self.database} answered ({self.tables} table(s)) in {self.seconds:.1f} s; the scratch "
                "server was stopped and removed")


@dataclass
class Verdict:
    """Whether the provider's newest backup satisfies backup.max_age, and why not."""

    inventory: Inventory
    backup: PhysicalBackup | None  # the newest usable one within max_age
    problem: str | None  # one sentence when ``backup`` is None

    @property
    def ok(self) -> bool:
        return self.backup is not None


class BackupProvider(ABC):
    """A physical backup system whose backups satisfy backup.policy."""

    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def inventory(self) -> Inventory:
        """The completed backups of the configured cluster, newest first."""

    @abstractmethod
    def restore_into(self, backup: PhysicalBackup, data_dir: Path, scratch: Path) -> None:
        """Write ``backup`` into the empty ``data_dir`` so that a server started on it recovers to the backup's
        consistent point and promotes, without archiving anything (tablespaces go under ``scratch``)."""

    @abstractmethod
    def take_hint(self) -> str:
        """How to take a backup, for messages."""


class PgBackRest(BackupProvider):
    """pgBackRest: ``pgbackrest info --output=json`` lists the stanza's backups, ``pgbackrest restore`` writes one."""

    name = "pgbackrest"

    @property
    def stanza(self) -> str:
        stanza = self.settings.backup.pgbackrest_stanza
        if not stanza:
            raise BackupProviderFailed(
                f'backup.provider is "pgbackrest" ({self.settings.source}) but backup.pgbackrest_stanza is not set.',
                hint="set backup.pgbackrest_stanza to the stanza of this database's cluster.")
        return stanza

    def _argv(self, *command: str) -> list[str]:
        backup = self.settings.backup
        program = backup.pgbackrest_command
        found = shutil.which(program) if os.sep not in program else (program if os.access(program, os.X_OK) else None)
        if found is None:
            raise BackupProviderFailed(
                f'backup.provider is "pgbackrest" ({self.settings.source}) but pgBackRest is not installed: no '
                f"program {program!r} (backup.pgbackrest_command) {'on PATH' if os.sep not in program else 'exists'}. "
                "Nothing was run.",
                hint="install pgBackRest (Debian/Ubuntu: apt-get install pgbackrest), set "
                "backup.pgbackrest_command to its path, or set backup.provider = \"pg_dump\".")
        argv = [found]
        if backup.pgbackrest_config:
            argv.append(f"--config={self.settings.resolve(backup.pgbackrest_config)}")
        argv.append(f"--stanza={self.stanza}")
        if backup.pgbackrest_repo is not None:
            argv.append(f"--repo={backup.pgbackrest_repo}")
        return [*argv, *command]

    def _run(self, *command: str, what: str, timeout: float | None = None) -> str:
        argv = self._argv(*command)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.SubprocessError) as exc:
            raise BackupProviderFailed(f"`{shlex.join(argv)}` ({what}) could not run: {exc}.") from exc
        if done.returncode != 0:
            text = " ".join((done.stderr or done.stdout).split())[-800:]
            raise BackupProviderFailed(
                f"`{shlex.join(argv)}` ({what}) failed with exit status {done.returncode}: {mask_password(text)}",
                hint="run the same command by hand; check backup.pgbackrest_config, backup.pgbackrest_stanza and "
                "backup.pgbackrest_repo.")
        return done.stdout

    def where(self) -> str:
        config = self.settings.backup.pgbackrest_config
        repo = self.settings.backup.pgbackrest_repo
        return (f"pgBackRest stanza {self.stanza!r}" + (f" (repo {repo})" if repo is not None else "")
                + f" with {'config ' + str(self.settings.resolve(config)) if config else 'its default config'}")

    def inventory(self) -> Inventory:
        out = self._run("--output=json", "info", what="the list of backups", timeout=120)
        try:
            stanzas = json.loads(out)
            entry = next(s for s in stanzas if s.get("name") == self.stanza)
        except (ValueError, StopIteration, AttributeError, TypeError):
            raise BackupProviderFailed(f"`pgbackrest info --output=json` gave no entry for the stanza {self.stanza!r}: "
                                       f"{out[:300]!r}") from None
        where = self.where()
        systems = {db.get("id"): db for db in entry.get("db", [])}
        backups: list[PhysicalBackup] = []
        for item in entry.get("backup", []):
            if item.get("error"):
                continue  # pgBackRest found page checksum errors in it
            db = systems.get((item.get("database") or {}).get("id"), {})
            stop = (item.get("timestamp") or {}).get("stop")
            if stop is None:
                continue
            size = (item.get("info") or {}).get("size")
            backups.append(PhysicalBackup(
                self.name, self.stanza, str(item.get("label")), str(item.get("type", "?")),
                datetime.fromtimestamp(int(stop), UTC), int(size) if size is not None else None,
                int(db["system-id"]) if "system-id" in db else None,
                int(str(db["version"]).split(".")[0]) if "version" in db else None))
        backups.sort(key=lambda b: (b.finished_at, b.label), reverse=True)
        status = entry.get("status") or {}
        note = None if backups else str(status.get("message") or "no backups")
        return Inventory(where, backups, note)

    def restore_into(self, backup: PhysicalBackup, data_dir: Path, scratch: Path) -> None:
        self._run(f"--pg1-path={data_dir}", f"--set={backup.label}", "--type=immediate", "--target-action=promote",
                  "--archive-mode=off", f"--tablespace-map-all={scratch / 'tablespaces'}", "restore",
                  what=f"the restore check's restore of {backup.label}")

    def take_hint(self) -> str:
        config = self.settings.backup.pgbackrest_config
        option = f"--config={self.settings.resolve(config)} " if config else ""
        return f"run `pgbackrest {option}--stanza={self.stanza} backup`"


PROVIDERS: dict[str, type[BackupProvider]] = {PgBackRest.name: PgBackRest}


def provider_for(settings: Settings) -> BackupProvider | None:
    """The physical backup provider of backup.provider; None for pgshift's own pg_dump."""
    kind = PROVIDERS.get(settings.backup.provider)
    return kind(settings) if kind is not None else None


def _age_text(age: timedelta) -> str:
    seconds = max(age.total_seconds(), 0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _system_id(conn: psycopg.Connection[Any] | None) -> int | None:
    if conn is None:
        return None
    try:
        with conn.transaction():  # a savepoint inside the caller's transaction: a refusal must not abort it
            row = conn.execute("SELECT system_identifier FROM pg_catalog.pg_control_system()").fetchone()
    except psycopg.Error:
        return None  # not readable: the backups cannot be matched to the server, only to the stanza
    return int(row[0]) if row else None


def judge(provider: BackupProvider, settings: Settings, conn: psycopg.Connection[Any] | None = None) -> Verdict:
    """The newest completed backup of this cluster (``conn``'s, when given) within backup.max_age."""
    inventory = provider.inventory()
    limit = settings.backup.max_age.delta
    system = _system_id(conn)
    ours = [b for b in inventory.backups if system is None or b.system_id in (None, system)]
    if not inventory.backups:
        return Verdict(inventory, None, f"{inventory.where} has no completed backup ({inventory.note})")
    if not ours:
        newest = inventory.backups[0]
        return Verdict(inventory, None, f"{inventory.where} has backups only of another cluster (system identifier "
                       f"{newest.system_id}, newest {newest.label}), not of this server ({system})")
    newest = ours[0]
    if newest.age() > limit:
        return Verdict(inventory, None, f"the newest completed backup in {inventory.where} is the "
                       f"{newest.describe()}, older than backup.max_age = {settings.backup.max_age}")
    return Verdict(inventory, newest, None)


def require_recent_backup(settings: Settings, conn: psycopg.Connection[Any] | None, *, action: str, reason: str,
                          notify: Notify | None = None) -> PhysicalBackup:
    """backup.policy under a physical provider: the backup ``action`` may rely on, restore-checked when
    backup.restore_check asks; else NoRecentBackup (``reason`` says why a backup is needed)."""
    provider = provider_for(settings)
    assert provider is not None, "require_recent_backup is for a physical backup.provider"
    verdict = judge(provider, settings, conn)
    if verdict.backup is None:
        raise NoRecentBackup(
            f"Refusing to {action}: {reason}, backup.policy is {settings.backup.policy!r} with backup.provider = "
            f"{settings.backup.provider!r}, and {verdict.problem}. Nothing was run.",
            hint=f"{provider.take_hint()} and rerun, raise backup.max_age, or pass --no-backup to accept the risk.")
    if notify:
        notify(f"backup.provider {provider.name}: the {verdict.backup.describe()} satisfies backup.policy")
    if settings.backup.restore_check:
        done = checked_before(settings, conn, verdict.backup)
        if done is not None:
            if notify:
                notify(done)
            return verdict.backup
        if notify:
            notify(f"restore check of {verdict.backup.reference} (backup.restore_check) ...")
        check = restore_check(settings, provider, verdict.backup)
        record_restore_check(settings, conn, check)
        if notify:
            notify(check.describe())
    return verdict.backup


RESTORE_CHECK_EVENT = "backup-restore-check"


def checked_before(settings: Settings, conn: psycopg.Connection[Any] | None, backup: PhysicalBackup) -> str | None:
    """A backup is immutable once complete: a restore check the ledger recorded for it is not repeated (at
    hundreds of gigabytes it takes hours). Says when it passed, or None."""
    if conn is None:
        return None
    from pgshift.db.history import History

    history = History(conn, settings.history_schema)
    for event in history.events_named(RESTORE_CHECK_EVENT, 50):
        if event["detail"].get("reference") == backup.reference and event["detail"].get("system_id") == \
                backup.system_id:
            return (f"restore check of {backup.reference} already passed at {event['at']:%Y-%m-%d %H:%M:%S %Z} "
                    f"(recorded in the history ledger); not repeated")
    return None


def record_restore_check(settings: Settings, conn: psycopg.Connection[Any] | None, check: RestoreCheck) -> None:
    if conn is None:
        return
    from pgshift.db.history import History

    history = History(conn, settings.history_schema)
    if history.exists():
        history.log(None, RESTORE_CHECK_EVENT, {
            "reference": check.backup.reference, "system_id": check.backup.system_id, "database": check.database,
            "tables": check.tables, "seconds": round(check.seconds, 1)})


# -- the restore check --------------------------------------------------------------------
def restore_check(settings: Settings, provider: BackupProvider, backup: PhysicalBackup) -> RestoreCheck:
    """Restore ``backup`` into a scratch folder, start a server on it on a free port (Unix socket only), query
    database_url's database as database_url's role, then stop the server and remove the folder."""
    started = time.monotonic()
    parent = settings.resolve(settings.backup.restore_check_directory) if settings.backup.restore_check_directory \
        else None
    try:
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="pgshift-restore-check-", dir=parent))
    except OSError as exc:
        raise BackupProviderFailed(f"The restore check could not create its scratch folder in "
                                   f"{parent or tempfile.gettempdir()} (backup.restore_check_directory): "
                                   f"{exc.strerror}.") from exc
    server: _ScratchServer | None = None
    try:
        data = scratch / "data"
        data.mkdir(mode=0o700)
        provider.restore_into(backup, data, scratch)
        server = _ScratchServer(settings, backup, scratch, data)
        server.start()
        database, tables = server.query()
        return RestoreCheck(backup, database, tables, time.monotonic() - started)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


class _ScratchServer:
    """PostgreSQL on a restored data directory: its own port, socket folder and trust-only pg_hba.conf, archiving
    off, as the data directory's owner (the server refuses to run as root)."""

    def __init__(self, settings: Settings, backup: PhysicalBackup, scratch: Path, data: Path) -> None:
        self.settings = settings
        self.backup = backup
        self.scratch = scratch
        self.data = data
        self.sock = Path()  # made by start()
        self.log = scratch / "server.log"
        self.port = free_port()
        major = backup.pg_major or int((data / "PG_VERSION").read_text().strip())
        tool = find_tool("pg_ctl", major, bindir=settings.backup.pg_bindir)
        if tool.major != major:
            raise BackupProviderFailed(
                f"The restore check needs PostgreSQL {major}'s server programs to start {backup.reference}; the "
                f"nearest found is {tool.path} ({tool.version}).",
                hint="install that server version, or point backup.pg_bindir at its bin folder.")
        self.pg_ctl = tool.path
        owner = data.stat()
        self.user = (owner.st_uid, owner.st_gid) if os.geteuid() == 0 else None
        if self.user is not None and self.user[0] == 0:
            raise BackupProviderFailed(f"The restore check cannot start {backup.reference}: the restored files are "
                                       "owned by root, and PostgreSQL does not run as root.",
                                       hint="run pgshift as the database's operating-system user.")

    def _as_owner(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        extra: dict[str, Any] = {}
        if self.user is not None:
            extra = {"user": self.user[0], "group": self.user[1], "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=self.scratch, **extra)

    def start(self) -> None:
        self.sock = Path(tempfile.mkdtemp(prefix="pgshift-sock-"))  # short: a socket path has at most 107 bytes
        hba = self.scratch / "pg_hba.conf"
        hba.write_text("local all all trust\n")  # only this socket folder, only for the check
        if not (self.data / "postgresql.conf").exists():  # kept outside the data directory (Debian's layout)
            (self.data / "postgresql.conf").write_text("")
        if self.user is not None:
            for path in (self.scratch, self.sock, hba, self.data / "postgresql.conf"):
                os.chown(path, *self.user)
        options = {"port": str(self.port), "listen_addresses": "", "unix_socket_directories": str(self.sock),
                   "hba_file": str(hba), "archive_mode": "off", "ssl": "off",
                   # Off: a hot standby refuses to start below the primary's max_connections (and the like);
                   # connections wait for the promotion at the backup's consistent point instead.
                   "hot_standby": "off",
                   "shared_buffers": "128MB", "logging_collector": "off", "cluster_name": "pgshift-restore-check"}
        opts = " ".join(f"-c {key}={shlex.quote(value)}" for key, value in options.items())
        try:
            done = self._as_owner([str(self.pg_ctl), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "600",
                                   "-o", opts, "start"], timeout=660)
        except (OSError, subprocess.SubprocessError) as exc:
            raise BackupProviderFailed(f"The restore check could not start a server on {self.backup.reference}: "
                                       f"{exc}.") from exc
        if done.returncode != 0:
            raise BackupProviderFailed(
                f"The restore check restored {self.backup.reference} but the server did not start on it: "
                f"{' '.join((done.stderr or done.stdout).split())} Server log: {self._log_tail()}",
                hint="restore it by hand and read the server log; the backup may not be usable.")

    def query(self, timeout: float = 600) -> tuple[str, int]:
        """Once recovery has reached the backup's consistent point and promoted: database_url's database and
        how many tables it holds, read as database_url's role."""
        params = conninfo.conninfo_to_dict(self.settings.database_url or "")
        database = str(params.get("dbname") or params.get("user") or "postgres")
        target = conninfo.make_conninfo(host=str(self.sock), port=self.port, dbname=database,
                                        user=str(params.get("user") or "postgres"),
                                        application_name="pgshift-restore-check", connect_timeout=30)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(target, autocommit=True) as conn:
                    recovering = conn.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()
                    if recovering is not None and not recovering[0]:
                        row = conn.execute("SELECT count(*) FROM pg_catalog.pg_tables "
                                           "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").fetchone()
                        return database, int(row[0]) if row else 0
                    problem = "it was still recovering"
            except psycopg.OperationalError as exc:
                starting = exc.sqlstate == "57P03" or any(  # cannot_connect_now; libpq's text when no SQLSTATE
                    text in str(exc) for text in ("starting up", "not yet accepting", "not accepting connections"))
                if not starting:
                    raise BackupProviderFailed(
                        f"The restore check started {self.backup.reference} but could not query database {database} "
                        f"in it: {mask_password(str(exc)).strip()}",
                        hint="the backup may predate this database or its role; take a new backup.") from exc
                problem = mask_password(str(exc)).strip()
            if time.monotonic() > deadline or not (self.data / "postmaster.pid").exists():
                raise BackupProviderFailed(
                    f"The restore check started {self.backup.reference} but it did not finish recovery within "
                    f"{timeout:.0f} s ({problem}). Server log: {self._log_tail()}",
                    hint="restore it by hand and read the server log; the backup may not be usable.")
            time.sleep(0.2)

    def stop(self) -> None:
        if not (self.data / "postmaster.pid").exists():
            if self.sock.name:
                shutil.rmtree(self.sock, ignore_errors=True)
            return
        # On failure the folder is removed next anyway; a postmaster whose lock file is gone shuts itself down.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            self._as_owner([str(self.pg_ctl), "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop"],
                           timeout=90)
        if self.sock.name:
            shutil.rmtree(self.sock, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
            worst = [line for line in lines if any(f"{level}:" in line for level in ("FATAL", "PANIC", "ERROR"))]
            return " | ".join(worst[-3:] + lines[-3:])
        except OSError:
            return "(none)"
