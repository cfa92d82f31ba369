"""`pgshift lint` in a machine format starts without importing what only the terminal output needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("fmt", ["json", "sarif", "github", "gitlab"])
def test_machine_formats_do_not_import_rich(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "m.sql"
    path.write_text("CREATE INDEX i ON t (c);\n")
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "pgshift", "lint", "-o", fmt, str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]  # PS001's finding: the report was written
    assert "PS001" in done.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "pgshift.lint.engine" in imported
    assert not [name for name in imported if name.split(".")[0] == "rich"]
