"""The pre-commit hook (.pre-commit-hooks.yaml) works as pre-commit runs it: the real pre-commit
installs this repository as a hook repo (`try-repo`, in a throwaway PRE_COMMIT_HOME) and runs
`pgshift lint` on the staged migration files of a project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO


def _pre_commit(project: Path, home: Path, *files: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGSHIFT_", "DATABASE_URL", "VIRTUAL_ENV"))}
    env["PRE_COMMIT_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(REPO), "pgshift-lint",
                           "--files", *files], cwd=project, env=env, capture_output=True, text=True, timeout=600)


def test_the_hook_fails_a_blocking_migration_and_passes_a_safe_one(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "migrations").mkdir(parents=True)
    (project / "migrations" / "001_trades.sql").write_text(
        "-- pgshift:up\nCREATE TABLE trades (id bigint PRIMARY KEY, user_id bigint);\n"
        "-- pgshift:down\nDROP TABLE trades;\n")
    (project / "migrations" / "002_index.sql").write_text(
        "-- pgshift:up\nCREATE INDEX trades_user ON trades (user_id);\n"
        "-- pgshift:down\nDROP INDEX CONCURRENTLY trades_user;\n")
    subprocess.run(["git", "init", "--quiet"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)

    blocked = _pre_commit(project, tmp_path / "home", "migrations/002_index.sql")
    assert blocked.returncode == 1, blocked.stdout + blocked.stderr
    assert "pgshift lint" in blocked.stdout and "Failed" in blocked.stdout
    assert "PS001 create-index-non-concurrently" in blocked.stdout

    safe = _pre_commit(project, tmp_path / "home", "migrations/001_trades.sql")
    assert safe.returncode == 0, safe.stdout + safe.stderr
    assert "Passed" in safe.stdout
