"""Shared test helpers: run the real CLI in a subprocess, write native migration files."""

from __future__ import annotations

import os
import shutil
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
