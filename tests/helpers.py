"""Shared test helpers: run the real CLI in a subprocess, write native migration files."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo, sql

from pgshift.embedded import EmbeddedCluster

PGSHIFT = [sys.executable, "-m", "pgshift"]


def run_pgshift(
    args: list[str], *, cwd: Path, url: str | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PGSHIFT_", "DATABASE_URL"))}
    if url is not None:
        full_env["DATABASE_URL"] = url
    full_env.update(env or {})
    return subprocess.run([*PGSHIFT, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def check_result(name: str, *, cwd: Path, url: str) -> dict[str, Any]:
    """The ``name`` item of ``pgshift check --json``."""
    result = run_pgshift(["check", "--json"], cwd=cwd, url=url)
    found: dict[str, Any] = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == name)
    return found


def start_pgshift(args: list[str], *, cwd: Path, url: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PGSHIFT_", "DATABASE_URL"))}
    full_env["DATABASE_URL"] = url
    full_env.update(env or {})
    return subprocess.Popen([*PGSHIFT, *args], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def write_migration(
    folder: Path, version: str, name: str, up: str, down: str | None = None, *, directives: tuple[str, ...] = ()
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"-- pgshift:{d}" for d in directives]
    lines += ["-- pgshift:up", up.strip()]
    if down is not None:
        lines += ["-- pgshift:down", down.strip()]
    path = folder / f"{version}_{name}.sql"
    path.write_text("\n".join(lines) + "\n")
    return path


REPO = Path(__file__).resolve().parent.parent


def build_wheel(dest: Path) -> Path:
    """The wheel of the working tree (tracked and new files, as a clean clone plus your edits would
    have them), built from a copy so nothing of an earlier build in the repo can leak into it."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True)
    source = dest / "source"
    for name in filter(None, files.stdout.split("\0")):
        if (REPO / name).is_file():  # a file deleted in the working tree is still listed as cached
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dest / "dist"),
                            str(source)], capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (dest / "dist").glob("pgshift-*.whl")
    return wheel


def make_venv(path: Path) -> Path:
    """A fresh virtualenv with pip and nothing else; its bin folder."""
    made = subprocess.run([sys.executable, "-m", "venv", str(path)], capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    return path / "bin"


@contextlib.contextmanager
def database_owner_role(conn: psycopg.Connection[Any], db_name: str, db_url: str, suffix: str, *,
                        owns_public: bool = False) -> Iterator[str]:
    """A non-superuser login role that owns the test's database (and, with ``owns_public``, its public
    schema), as an application's migration role often does; yields its connection string and drops it."""
    role = f"{db_name}_{suffix}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'pw'").format(sql.Identifier(role)))
    conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(db_name), sql.Identifier(role)))
    if owns_public:
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(role)))
    try:
        params = conninfo.conninfo_to_dict(db_url)
        params.update(user=role, password="pw")
        yield conninfo.make_conninfo(**params)  # type: ignore[arg-type]
    finally:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(sql.Identifier(db_name)))
        conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def find_program(name: str, *places: str) -> str | None:
    """A Debian-packaged program on PATH, or in the folders Debian installs it to (not on every PATH)."""
    return shutil.which(name) or next((p for p in places if os.access(p, os.X_OK)), None)


@contextlib.contextmanager
def small_cluster(prefix: str, settings: dict[str, str] | None = None) -> Iterator[EmbeddedCluster]:
    """A small cluster of one test's own, which it may restart or crash without disturbing other tests."""
    cluster = EmbeddedCluster(Path(tempfile.mkdtemp(prefix=prefix)))
    cluster.start(tcp=False, settings={"max_connections": "20", "shared_buffers": "16MB", **(settings or {})})
    try:
        yield cluster
    finally:
        cluster.destroy()
