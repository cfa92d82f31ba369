"""Shared test helpers: run the real CLI in a subprocess, write native migration files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PGSHIFT = [sys.executable, "-m", "pgshift"]


def run_pgshift(
    args: list[str], *, cwd: Path, url: str | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PGSHIFT_", "DATABASE_URL"))}
    if url is not None:
        full_env["DATABASE_URL"] = url
    full_env.update(env or {})
    return subprocess.run([*PGSHIFT, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


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
