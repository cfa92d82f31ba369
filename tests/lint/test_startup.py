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
