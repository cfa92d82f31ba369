"""PostgreSQL's own client tools (pg_dump, pg_restore) and how to start them safely.

The password never goes into a child's argv (visible to every user in ``ps``): the child gets a
conninfo string without it and reads it from ``PGPASSWORD`` in its own environment.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg._encodings import pg2pyenc  # PostgreSQL's encoding names -> Python codecs

from pgshift.db.connect import dbname_in, mask_password
from pgshift.embedded import candidate_bindirs
from pgshift.errors import BackupFailed

_VERSION = re.compile(r"\(PostgreSQL\)\s+((\d+)(?:\.\d+)*)")


@dataclass(frozen=True)
class Tool:
    """One client program with its version, e.g. pg_dump 15.4."""

    name: str
    path: Path
    version: str
    major: int


@functools.lru_cache(maxsize=64)
def tool_version(path: Path) -> tuple[str, int] | None:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out)
    if not match:
        return None
    return match.group(1), int(match.group(2))


def _candidates(name: str, bindir: Path | str | None) -> list[Path]:
    dirs: list[Path] = [Path(bindir)] if bindir else []
    if found := shutil.which(name):
        dirs.append(Path(found).resolve().parent)
    dirs.extend(candidate_bindirs())
    seen: list[Path] = []
    for directory in dirs:
        path = directory / name
        if path.is_file() and os.access(path, os.X_OK) and path.resolve() not in [s.resolve() for s in seen]:
            seen.append(path)
    return seen


def _explicit(name: str, bindir: Path | str) -> Tool | None:
    path = Path(bindir) / name
    version = tool_version(path) if path.is_file() and os.access(path, os.X_OK) else None
    return Tool(name, path, *version) if version else None


def find_tool(name: str, server_major: int, *, bindir: Path | str | None = None) -> Tool:
    """The ``name`` binary whose major version is >= the server's: the same major if there is one
    (an explicit ``bindir`` first), else the newest. A tool older than the server cannot read it."""
    if bindir and (chosen := _explicit(name, bindir)) and chosen.major >= server_major:
        return chosen  # the others are not looked for: each costs a process start
    tools = [Tool(name, p, *v) for p in _candidates(name, bindir) if (v := tool_version(p))]
    usable = [t for t in tools if t.major >= server_major]
    same = [t for t in usable if t.major == server_major]
    if same:
        return same[0]
    if usable:
        return max(usable, key=lambda t: t.major)
    found = ", ".join(f"{t.path} ({t.version})" for t in tools) or "none"
    raise BackupFailed(
        f"No {name} of PostgreSQL {server_major} or newer was found (found: {found}). {name} "
        f"refuses to work with a server newer than itself, and its archives need a {name} at least "
        "as new as the one that wrote them.",
        hint=f"install the PostgreSQL {server_major} client tools (e.g. postgresql-client-{server_major}) "
        "or set backup.pg_bindir to their bin directory.",
    )


def child_connection(url: str, dbname: str | None = None) -> tuple[str, dict[str, str]]:
    """(conninfo without password, extra environment) for a libpq child process."""
    params: dict[str, Any] = conninfo.conninfo_to_dict(url)
    password = params.pop("password", None)
    params.pop("application_name", None)  # so the child shows up as 'pg_dump' in pg_stat_activity
    if dbname is not None:
        params["dbname"] = dbname
    env: dict[str, str] = {}
    if password:
        env["PGPASSWORD"] = str(password)
    return conninfo.make_conninfo(**{k: str(v) for k, v in params.items()}), env


def with_server_options(target: str, *options: str) -> str:
    """``target`` (a conninfo) whose session also starts with ``options`` (``-c name=value``), in its
    options parameter beside what the URL's own options or else PGOPTIONS ask for: an options
    parameter replaces PGOPTIONS, and PGOPTIONS set beside a URL's options would be ignored."""
    params: dict[str, Any] = conninfo.conninfo_to_dict(target)
    given = str(params.get("options") or os.environ.get("PGOPTIONS", ""))
    params["options"] = " ".join([given, *options]).strip()
    return conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


def ends_with_its_client(target: str, server_major: int) -> str:
    """``target`` (a child tool's conninfo) whose server session ends within a second of the tool's death
    (PostgreSQL 14+), even mid-statement or waiting for a lock, instead of running on and holding its
    locks, snapshot or database after pgshift and the tool were killed."""
    return with_server_options(target, "-c client_connection_check_interval=1s") if server_major >= 14 else target


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@functools.lru_cache(maxsize=1)
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process dies (Linux): a pgshift
    killed with kill -9 must not leave a pg_dump holding its snapshot and locks, or a pg_restore
    writing on. Looked up here, in the parent: the child only makes the one call."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return preexec


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """Our environment minus libpq variables that could redirect the child, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGDATABASE", "PGSERVICE")}
    env.update(extra)
    env.setdefault("LC_MESSAGES", "C")
    return env


def dbname_of(url: str) -> str:
    name = dbname_in(url)
    if not name:
        raise BackupFailed(f"The connection string {mask_password(url)} names no database.")
    return name


def out_of_space(text: str) -> bool:
    """Whether a tool's error is a full disk (the server's, or this machine's): PostgreSQL prints the
    operating system's message after the file it could not extend or write."""
    return "No space left on device" in text or "Disk quota exceeded" in text


# How libpq reports a session the server ended: which of them a tool prints depends on whether the
# server's goodbye arrived before the socket closed.
_SESSION_ENDED = ("terminating connection due to administrator command", "server closed the connection unexpectedly",
                  "the database system is shutting down", "could not receive data from server")


def session_ended(text: str) -> bool:
    """Whether a tool's error is its connection ended by the server (a restart, a shutdown, pg_terminate_backend)."""
    return any(words in text for words in _SESSION_ENDED)


def run_tool(argv: list[str], env: dict[str, str], *, what: str, timeout: float | None = None) -> str:
    """Run a client tool to completion and return its output as text (a SQL script is decoded in
    the encoding it declares); BackupFailed with its (masked) stderr on failure."""
    try:
        result = subprocess.run(argv, capture_output=True, env=child_env(env), timeout=timeout,
                                preexec_fn=die_with_parent())
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackupFailed(f"{what}: could not run {argv[0]}: {exc}") from exc
    if result.returncode != 0:
        detail = mask_password(result.stderr.decode("utf-8", errors="replace").strip()[-2000:])
        raise BackupFailed(f"{what}: {Path(argv[0]).name} failed: {detail}")
    return decode_script(result.stdout)


# pg_dump and pg_restore write names and rows in the database's encoding and say which at the top.
CLIENT_ENCODING = re.compile(rb"^SET client_encoding = '([A-Za-z0-9_]+)';", re.M)


def python_encoding(pg_name: bytes, default: str = "utf-8") -> str:
    """The Python codec for a PostgreSQL encoding name (LATIN1 -> iso8859-1), else ``default``."""
    try:
        return pg2pyenc(pg_name)
    except (KeyError, psycopg.NotSupportedError):
        return default


def database_codec(pg_name: str | None) -> str:
    """The Python codec for a database encoding a manifest recorded (UTF-8 when none was)."""
    return python_encoding(pg_name.encode()) if pg_name else "utf-8"


def decode_script(data: bytes) -> str:
    match = CLIENT_ENCODING.search(data, 0, 1 << 16)
    encoding = python_encoding(match.group(1)) if match else "utf-8"
    return data.decode(encoding, errors="replace")


def server_info(conn: psycopg.Connection[Any]) -> tuple[str, int]:
    row = conn.execute(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int"
    ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1]) // 10000


_LOCK_WAIT = re.compile(r"Query was: LOCK TABLE (\S+) IN ")


def lock_waited_on(stderr: str) -> str | None:
    """The table pg_dump gave up locking (its --lock-wait-timeout ran out), from its error output."""
    match = _LOCK_WAIT.search(stderr)
    return match.group(1) if match and "statement timeout" in stderr else None
