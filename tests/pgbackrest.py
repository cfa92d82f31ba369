"""A real pgBackRest repository for tests: a cluster of its own that archives its WAL with
``pgbackrest archive-push``, a stanza created on it and full backups taken by ``pgbackrest backup``, all in
one temporary folder with its own pgbackrest.conf (passed with --config; nothing in /etc is read).

pgBackRest runs as the cluster's operating-system user (as the server runs archive-push). Not installed:
the fixture fails (a test CI skips is a defect); `.ci/run` installs Debian's `pgbackrest` package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgshift.embedded import EmbeddedCluster, _server_user
from tests.helpers import find_program

STANZA = "main"


def find_pgbackrest() -> str | None:
    return find_program("pgbackrest", "/usr/bin/pgbackrest", "/usr/local/bin/pgbackrest")


@dataclass
class BackRest:
    root: Path
    cluster: EmbeddedCluster
    binary: str

    @property
    def config(self) -> Path:
        return self.root / "pgbackrest.conf"

    def url(self, dbname: str = "postgres") -> str:
        return self.cluster.socket_dsn(dbname)

    def run(self, *args: str, config: Path | None = None, stanza: str = STANZA) -> str:
        """pgbackrest as the cluster's user; fails the test on a non-zero exit."""
        user = _server_user()
        kwargs: dict[str, object] = {}
        if user is not None:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        done = subprocess.run([self.binary, f"--config={config or self.config}", f"--stanza={stanza}", *args],
                              capture_output=True, text=True, timeout=300, cwd=self.root, **kwargs)  # type: ignore[call-overload]
        if done.returncode != 0:
            pytest.fail(f"pgbackrest {' '.join(args)} failed ({done.returncode}): {done.stderr or done.stdout}")
        return str(done.stdout)

    def backup(self) -> None:
        self.run("--type=full", "backup")

    def empty_repository(self, name: str) -> Path:
        """A second pgbackrest.conf for the same cluster whose repository has the stanza but no backup yet."""
        config = self.root / f"{name}.conf"
        repo = self.root / f"repo-{name}"
        repo.mkdir()
        _own(repo)
        config.write_text(self.config.read_text().replace(str(self.root / "repo"), str(repo)))
        self.run("stanza-create", config=config)
        return config

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        return name


def _own(path: Path) -> None:
    user = _server_user()
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)


def start_backrest() -> BackRest:
    binary = find_pgbackrest()
    if binary is None:
        pytest.fail("pgBackRest is not installed (no pgbackrest on PATH or in /usr/bin). `.ci/run` installs it "
                    "(Debian's pgbackrest package: apt-get install pgbackrest); the backup.provider tests need a "
                    "real one and are not skipped.")
    root = Path(tempfile.mkdtemp(prefix="pgshift-test-pgbackrest-"))
    for name in ("repo", "log", "lock", "spool"):
        (root / name).mkdir()
        _own(root / name)
    cluster = EmbeddedCluster(root / "cluster")
    state = cluster.start(tcp=False, settings={"archive_mode": "on", "wal_level": "replica"})
    backrest = BackRest(root, cluster, binary)
    backrest.config.write_text(f"""\
[global]
repo1-path={root / "repo"}
repo1-retention-full=10
log-path={root / "log"}
lock-path={root / "lock"}
spool-path={root / "spool"}
log-level-console=warn
log-level-file=off
start-fast=y
compress-type=none
archive-timeout=60

[{STANZA}]
pg1-path={cluster.data}
pg1-socket-path={state.socket_dir}
pg1-port={state.port}
""")
    _own(root)
    _own(backrest.config)
    command = f"{binary} --config={backrest.config} --stanza={STANZA} archive-push %p"
    with psycopg.connect(cluster.socket_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SYSTEM SET archive_command = {}").format(sql.Literal(command)))
        conn.execute("SELECT pg_reload_conf()")
    backrest.run("stanza-create")
    return backrest


@pytest.fixture(scope="module")
def backrest() -> Iterator[BackRest]:
    """A cluster archiving into a pgBackRest repository whose stanza has no backup yet."""
    backrest = start_backrest()
    try:
        yield backrest
    finally:
        backrest.cluster.destroy()
        shutil.rmtree(backrest.root, ignore_errors=True)
