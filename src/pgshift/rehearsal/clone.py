"""A throwaway copy of the source database: a file-level template copy when nobody else is
connected, else ``pg_dump -Fc | pg_restore`` (or a restore of a given dump file).

The source is only ever read: CREATE DATABASE ... TEMPLATE copies it, pg_dump reads it in one
repeatable-read snapshot.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from pgshift.db.connect import connect, dbname_in, drop_database, mask_password, server_major, with_dbname
from pgshift.db.privileges import REHEARSAL_COPY, require_createdb, require_readable_tables
from pgshift.db.scratch import claim, mark, sweep_marked
from pgshift.errors import BackupFailed, RehearsalFailed
from pgshift.safety import tools

MAINTENANCE_DBS = ("postgres", "template1")


@dataclass
class Clone:
    name: str
    url: str
    source: str
    method: str  # "template-file-copy" | "template" | "pg_dump" | "backup"
    duration_s: float
    note: str = ""


def dbname_of(url: str) -> str:
    name = dbname_in(url)
    if not name:
        raise RehearsalFailed(f"The connection string {mask_password(url)} names no database to rehearse on.")
    return name


def maintenance_connection(url: str) -> psycopg.Connection[Any]:
    """A connection to another database of the same server, for CREATE/DROP DATABASE. Without a
    statement_timeout: copying a large database as a template outlasts a role's own one, kept for the
    application (CREATE DATABASE cannot run in a transaction, so this is set for the session)."""
    last: Exception | None = None
    for name in MAINTENANCE_DBS:
        try:
            admin = connect(with_dbname(url, name), application_name="pgshift-rehearse")
        except Exception as exc:  # try the next maintenance database
            last = exc
            continue
        admin.execute("SELECT set_config('statement_timeout', '0', false)")
        return admin
    raise RehearsalFailed(
        f"Cannot reach a maintenance database (postgres or template1) on the server of "
        f"{mask_password(url)} to create the clone: {last}"
    )


def other_sessions(admin: psycopg.Connection[Any], source: str, *, grace_s: float = 1.0) -> int:
    """Sessions on ``source`` other than ours, after waiting up to ``grace_s`` for them to end.

    A client that has just disconnected keeps its backend in pg_stat_activity for a few
    milliseconds while it exits; without the wait, a source that is really idle (pgshift's own
    look at it a moment earlier, say) would be copied with the much slower pg_dump.
    """
    deadline = time.monotonic() + grace_s
    while True:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (source,)
        ).fetchone()
        count = int(row[0]) if row else 0
        if count == 0 or time.monotonic() >= deadline:
            return count
        time.sleep(0.05)


def clone_name(source: str) -> str:
    return f"pgshift_rehearsal_{source[:30]}_{secrets.token_hex(4)}"


# A clone being made or used carries this comment and its creator holds an advisory lock on its
# name for the whole run; a clone with the comment whose lock is free was left by a killed pgshift.
IN_PROGRESS = "pgshift rehearse: in progress (dropped by the next rehearse if its creator is gone)"
KEPT = "pgshift rehearse --keep: kept on purpose"


@contextmanager
def claimed_name(source_url: str) -> Iterator[str]:
    """A fresh clone name, held (a claim on a maintenance connection) until the end of the ``with``,
    so no other rehearse sweeps the clone while this run makes or uses it."""
    name = clone_name(dbname_of(source_url))
    with maintenance_connection(source_url) as holder:
        claim(holder, name)
        yield name


def sweep_leftover_clones(source_url: str, *, own: str | None = None) -> list[str]:
    """Drop clones of this source left by a rehearse that was killed (kill -9, a crash): those still
    marked in progress whose name no live session holds and that nobody is connected to. Kept
    clones, clones of running rehearsals and unmarked databases are left alone."""
    source = dbname_of(source_url)
    pattern = re.compile(rf"pgshift_rehearsal_{re.escape(source[:30])}_[0-9a-f]{{8}}")
    with maintenance_connection(source_url) as admin:
        return sweep_marked(admin, IN_PROGRESS, pattern, own=own)


def mark_clone(source_url: str, name: str, comment: str) -> None:
    with maintenance_connection(source_url) as admin:
        mark(admin, name, comment)


def make_clone(source_url: str, *, from_backup: Path | None = None, bindir: str | None = None,
               lock_wait_ms: int = 0, name: str | None = None) -> Clone:
    """Create the clone (named ``name``, else a fresh name); the caller must always call
    :func:`drop_clone` (also on failure)."""
    source = dbname_of(source_url)
    name = name or clone_name(source)
    started = time.monotonic()
    with maintenance_connection(source_url) as admin:
        require_createdb(admin, "A rehearsal runs on a throwaway copy of the database and",
                         instead="rehearse against a copy of the database on a server where the role has it "
                         "(a staging instance, or a local `pgshift dev start` server loaded from a `pgshift backup` "
                         "with pg_restore)")
        major = server_major(admin)
        why_dump = "the source had other sessions, so it was copied with pg_dump | pg_restore"
        if from_backup is None and other_sessions(admin, source) == 0:
            strategy = major >= 15
            try:
                query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(source))
                if strategy:
                    # WAL_LOG (the default) would write the whole database into WAL for every standby.
                    query = query + sql.SQL(" STRATEGY FILE_COPY")
                admin.execute(query)
                mark(admin, name, IN_PROGRESS)
                method = "template-file-copy" if strategy else "template"
                return Clone(name, with_dbname(source_url, name), source, method,
                             time.monotonic() - started, note=carry_settings(admin, source, name))
            except pgerrors.ObjectInUse:
                pass  # someone connected in between: fall back to a dump
            except psycopg.errors.InsufficientPrivilege:
                # The role has CREATEDB (checked above): only the source's owner may copy it as a template.
                why_dump = ("the role does not own the source database, which a template copy needs, so it was "
                            "copied with pg_dump | pg_restore")
        if from_backup is None:  # pg_dump would stop part-way: ask before anything is created
            with connect(source_url, application_name="pgshift-rehearse") as reader:
                require_readable_tables(reader, REHEARSAL_COPY)
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        mark(admin, name, IN_PROGRESS)
        carried = carry_settings(admin, source, name)
    clone = Clone(name, with_dbname(source_url, name), source,
                  "backup" if from_backup else "pg_dump", 0.0)
    try:
        if from_backup is not None:
            restore_file(from_backup, clone.url, major, bindir)
            clone.note = "; ".join(filter(None, [f"restored from {from_backup}", carried]))
        else:
            dump_into(source_url, clone.url, major, bindir, lock_wait_ms)
            clone.note = "; ".join(filter(None, [why_dump, carried]))
    except BaseException:
        drop_clone(source_url, name)
        raise
    clone.duration_s = time.monotonic() - started
    return clone


# Settings whose value is a list of names, each quoted on its own (pg_dump's variable_is_guc_list_quote).
_LIST_QUOTED = frozenset({"local_preload_libraries", "search_path", "session_preload_libraries",
                          "shared_preload_libraries", "temp_tablespaces", "unix_socket_directories"})


def carry_settings(admin: psycopg.Connection[Any], source: str, clone: str) -> str:
    """Give the clone the settings the source database carries for its sessions (ALTER DATABASE ... SET,
    ALTER ROLE ... IN DATABASE ... SET), which no copy of a database takes along: a migration must run
    on the clone under the DateStyle, search_path or statement_timeout it will meet in production. The
    note names what was carried and what this role may not set."""
    rows = admin.execute(
        "SELECT coalesce(r.rolname, ''), s.setconfig FROM pg_db_role_setting s "
        "JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole "
        "WHERE d.datname = %s ORDER BY 1", (source,)).fetchall()
    carried: list[str] = []
    refused: list[str] = []
    for role, config in rows:
        for entry in config or []:
            name, _, value = str(entry).partition("=")
            target = (sql.SQL("ROLE {} IN DATABASE {}").format(sql.Identifier(role), sql.Identifier(clone)) if role
                      else sql.SQL("DATABASE {}").format(sql.Identifier(clone)))
            values = [sql.Literal(v) for v in _guc_list(value)] if name.lower() in _LIST_QUOTED \
                else [sql.Literal(value)]
            shown = f"{name} (role {role})" if role else name
            try:
                with admin.transaction():
                    admin.execute(sql.SQL("ALTER {} SET {} TO {}").format(
                        target, sql.SQL(".").join(sql.Identifier(p) for p in name.split(".")),
                        sql.SQL(", ").join(values)))
                carried.append(shown)
            except psycopg.Error as exc:
                refused.append(f"{shown} ({exc.diag.message_primary or exc})")
    parts = []
    if carried:
        parts.append(f"the source database's own settings carried over: {', '.join(carried)}")
    if refused:
        parts.append(f"not carried over (the rehearsal runs without them): {'; '.join(refused)}")
    return "; ".join(parts)


def _guc_list(value: str) -> list[str]:
    """A list setting's stored value (``"$user", public``) as its elements, double quotes removed."""
    items: list[str] = []
    current, quoted, i = "", False, 0
    while i < len(value):
        ch = value[i]
        if ch == '"':
            if quoted and value[i + 1:i + 2] == '"':
                current += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == "," and not quoted:
            items.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    items.append(current.strip())
    return [item for item in items if item]


def drop_clone(source_url: str, name: str) -> None:
    with maintenance_connection(source_url) as admin:
        drop_database(admin, name)


def database_exists(url: str, name: str) -> bool:
    with maintenance_connection(url) as admin:
        return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


# -- pg_dump / pg_restore ------------------------------------------------------------------
def find_tool(name: str, major: int, bindir: str | None) -> str:
    """The client tool of the server's major version (or newer), found as backups find theirs."""
    try:
        return str(tools.find_tool(name, major, bindir=bindir).path)
    except BackupFailed as exc:
        raise RehearsalFailed(f"Cannot copy the database: {exc.message}", hint=exc.hint) from exc


def _child(url: str) -> tuple[str, dict[str, str]]:
    """conninfo without the password (argv is visible in ps) and the environment carrying it."""
    target, extra = tools.child_connection(url)
    return target, tools.child_env(extra)


def _restore_argv(tool: str, clone_url: str) -> tuple[list[str], dict[str, str]]:
    target, env = _child(clone_url)
    return [tool, f"--dbname={target}", "--no-owner", "--no-privileges", "--exit-on-error"], env


def dump_into(source_url: str, clone_url: str, major: int, bindir: str | None, lock_wait_ms: int = 0) -> None:
    source, dump_env = _child(source_url)
    restore_argv, restore_env = _restore_argv(find_tool("pg_restore", major, bindir), clone_url)
    wait = [f"--lock-wait-timeout={lock_wait_ms}"] if lock_wait_ms > 0 else []
    # A pg_dump killed with us would leave a backend waiting for a lock (queued ahead of the migration's
    # own locks) or holding its snapshot.
    source = tools.ends_with_its_client(source, major)
    dump = subprocess.Popen([find_tool("pg_dump", major, bindir), "-Fc", *wait, f"--dbname={source}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dump_env,
                            preexec_fn=tools.die_with_parent())
    assert dump.stdout is not None
    restore = subprocess.run(restore_argv, stdin=dump.stdout, capture_output=True, env=restore_env,
                             preexec_fn=tools.die_with_parent())
    dump.stdout.close()
    dump_err = dump.stderr.read() if dump.stderr else b""
    dump.wait()
    if dump.returncode != 0 or restore.returncode != 0:
        detail = (dump_err or restore.stderr).decode(errors="replace").strip()[-1500:]
        locked = tools.lock_waited_on(detail)
        if locked:
            raise RehearsalFailed(
                f"Could not copy the database for the rehearsal: table {locked} stayed locked by another session "
                f"for longer than lock_wait ({lock_wait_ms} ms), so pg_dump gave up. Nothing was changed.",
                hint="`pgshift check` lists sessions that hold locks; raise lock_wait to wait longer.")
        raise RehearsalFailed(f"Copying the database with pg_dump | pg_restore failed: {mask_password(detail)}")


def restore_file(path: Path, clone_url: str, major: int, bindir: str | None) -> None:
    dump = _dump_file(path)
    argv, env = _restore_argv(find_tool("pg_restore", major, bindir), clone_url)
    result = subprocess.run([*argv, str(dump)], capture_output=True, env=env, preexec_fn=tools.die_with_parent())
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip()[-1500:]
        raise RehearsalFailed(f"Restoring {dump} into the clone failed: {mask_password(detail)}")


def _dump_file(path: Path) -> Path:
    """A pg_dump archive file or directory, or a pgshift backup folder holding one."""
    if not path.exists():
        raise RehearsalFailed(f"--from-backup {path}: no such file or folder.")
    if path.is_file() or (path / "toc.dat").is_file():
        return path
    manifest = path / "manifest.json"
    if manifest.is_file():  # a pgshift backup folder names its archive in the manifest
        try:
            named = json.loads(manifest.read_text()).get("dump")
        except (OSError, ValueError):
            named = None
        if isinstance(named, str) and (path / named).exists():
            return path / named
    candidates = sorted(p for p in path.iterdir()
                        if p.suffix in (".dump", ".pgdump") or (p / "toc.dat").is_file())
    if not candidates:
        raise RehearsalFailed(f"--from-backup {path}: the folder holds no pg_dump archive (*.dump or toc.dat).")
    return candidates[0]
