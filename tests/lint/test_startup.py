"""`pgshift lint` in a machine format, or tty piped, starts without importing what only colours need."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _lint(tmp_path: Path, fmt: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    path = tmp_path / "m.sql"
    path.write_text("CREATE INDEX i ON t (c);\n")
    clean = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "pgshift", "lint", "-o", fmt, str(path)],
                          capture_output=True, text=True, timeout=60, env={**clean, **env})
    assert done.returncode == 1, done.stderr[-2000:]  # PS001's finding: the report was written
    assert "PS001" in done.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "pgshift.lint.engine" in imported
    return done, imported


@pytest.mark.parametrize("fmt", ["json", "sarif", "github", "gitlab", "tty"])
def test_machine_formats_and_piped_tty_do_not_import_rich(tmp_path: Path, fmt: str) -> None:
    done, imported = _lint(tmp_path, fmt)
    assert not [name for name in imported if name.split(".")[0] == "rich"]
    assert "\x1b[" not in done.stdout


def test_piped_tty_forced_to_colour_still_gets_colours(tmp_path: Path) -> None:
    done, imported = _lint(tmp_path, "tty", FORCE_COLOR="1")
    assert "rich.console" in imported
    assert "\x1b[" in done.stdout


# Run in the child: the CLI as `python -m pgshift` runs it, then the modules it loaded (importtime
# misses those loaded through importlib.import_module: the command modules, api's exports, the rules).
_MODULES_AFTER_LINT = """
import runpy, sys
sys.argv = ["pgshift", *sys.argv[1:]]
try:
    runpy.run_module("pgshift", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    sys.stderr.write("exit=%s\\n" % exc.code)
sys.stderr.write("modules=" + " ".join(sorted(sys.modules)) + "\\n")
"""

# What a plain lint of one file (a pre-commit hook's) must not pay for: the driver and colours, hashlib
# (OpenSSL), the --fix writer with shutil (bz2, lzma), the .ops replay of folders, every other command's layers.
_NOT_FOR_A_PLAIN_LINT = ("psycopg", "psycopg_pool", "rich", "pgshift.lint.fix", "shutil", "bz2", "lzma", "hashlib",
                         "pgshift.lint.opsmodel", "pgshift.lint.live", "pgshift.db", "pgshift.runner", "pgshift.ops",
                         "pgshift.safety", "pgshift.rehearsal", "pgshift.deploy", "pgshift.rollout", "pgshift.watch",
                         "pgshift.fleet", "pgshift.embedded", "yaml", "asyncio")


def test_lint_of_one_file_imports_only_what_linting_needs(tmp_path: Path) -> None:
    path = tmp_path / "m.sql"
    path.write_text("CREATE INDEX i ON t (c);\n")
    done = subprocess.run([sys.executable, "-c", _MODULES_AFTER_LINT, "lint", "-o", "json", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "exit=1" in done.stderr, done.stderr[-2000:]  # PS001's finding: the report was written
    assert '"PS001"' in done.stdout
    modules = next(line for line in done.stderr.splitlines() if line.startswith("modules=")).split("=", 1)[1].split()
    assert "pgshift.lint.engine" in modules and "pgshift.lint.rules.ps001_create_index_non_concurrently" in modules
    loaded = sorted(m for m in modules if any(m == name or m.startswith(name + ".") for name in _NOT_FOR_A_PLAIN_LINT))
    assert loaded == []


def test_fix_still_loads_its_writer(tmp_path: Path) -> None:
    """The writer --fix imports on demand is there when asked for: the file is rewritten."""
    path = tmp_path / "m.sql"
    path.write_text("CREATE INDEX i ON t (c);\n")
    done = subprocess.run([sys.executable, "-c", _MODULES_AFTER_LINT, "lint", "--fix", "-o", "json", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "CONCURRENTLY" in path.read_text(), done.stderr[-2000:]
    assert "pgshift.lint.fix" in done.stderr


def test_a_lint_error_is_printed_without_the_database_driver(tmp_path: Path) -> None:
    """Every CLI message is masked for passwords: the masking must not import psycopg (~50 ms)."""
    done = subprocess.run([sys.executable, "-c", _MODULES_AFTER_LINT, "lint", "-o", "json", "missing.sql"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "missing.sql" in done.stderr and "exit=2" in done.stderr, done.stderr[-2000:]
    modules = next(line for line in done.stderr.splitlines() if line.startswith("modules=")).split("=", 1)[1].split()
    assert "pgshift.db.masking" in modules
    assert [m for m in modules if m.split(".")[0] in ("psycopg", "psycopg_pool")] == []
