"""The wheel built from the repo works on its own, as in a CI image that already runs PostgreSQL.

No editable install and no file of the repo: the wheel is built from a copy of the working tree and
installed into a fresh virtualenv, and its `pgshift` runs lint and migrate against the real server.
`pgserver` (34 MB of server binaries) is the `embedded` extra, so a plain install leaves it out.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.helpers import REPO, build_wheel, make_venv, write_migration


def _run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with only the wheel (and its declared dependencies) installed; its bin folder."""
    root = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(root)
    bin_dir = make_venv(root / "venv")
    pip = _run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(wheel)], cwd=root)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return bin_dir


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PGSHIFT_", "DATABASE_URL", "PYTHON", "VIRTUAL_ENV"))}


def test_the_wheel_imports_from_its_own_install_without_pgserver(installed: Path, tmp_path: Path) -> None:
    probe = _run([str(installed / "python"), "-c",
                  "import importlib.util, pgshift; print(pgshift.__file__); "
                  "print(importlib.util.find_spec('pgserver') is None)"], cwd=tmp_path, env=_env())
    assert probe.returncode == 0, probe.stderr
    location, no_pgserver = probe.stdout.split()
    assert Path(location).is_relative_to(installed.parent), location
    assert not Path(location).is_relative_to(REPO)
    assert no_pgserver == "True", "pgserver must be the optional `embedded` extra, not a dependency"
    version = _run([str(installed / "pgshift"), "--version"], cwd=tmp_path, env=_env())
    assert version.returncode == 0 and "0.1.0" in version.stdout, version.stdout + version.stderr


def test_the_wheel_lints_and_migrates_a_real_server(installed: Path, tmp_path: Path, db_url: str) -> None:
    folder = tmp_path / "migrations"
    write_migration(folder, "001", "create_trades", "CREATE TABLE trades (id bigint PRIMARY KEY, user_id bigint);",
                    "DROP TABLE trades;")
    write_migration(folder, "002", "index_trades", "CREATE INDEX CONCURRENTLY trades_user_id ON trades (user_id);",
                    "DROP INDEX CONCURRENTLY trades_user_id;", directives=("no-transaction",))
    pgshift = str(installed / "pgshift")
    clean = _run([pgshift, "lint", str(folder)], cwd=tmp_path, env=_env())
    assert clean.returncode == 0, clean.stdout + clean.stderr

    write_migration(folder, "003", "blocking_index", "CREATE INDEX trades_id_user ON trades (id, user_id);",
                    "DROP INDEX trades_id_user;")
    flagged = _run([pgshift, "lint", str(folder)], cwd=tmp_path, env=_env())
    assert flagged.returncode != 0 and "003" in flagged.stdout + flagged.stderr, flagged.stdout + flagged.stderr
    (folder / "003_blocking_index.sql").unlink()

    applied = _run([pgshift, "migrate", "--dir", str(folder), "--no-backup"], cwd=tmp_path,
                   env={**_env(), "DATABASE_URL": db_url})
    assert applied.returncode == 0, applied.stdout + applied.stderr
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'trades_user_id'::regclass").fetchone()
    assert row == (True,)
