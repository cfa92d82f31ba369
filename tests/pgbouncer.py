"""A real PgBouncer in transaction pooling mode in front of the test cluster.

Its ini and auth file go to a temporary folder; it listens on 127.0.0.1 at a free port and reaches
the cluster over its Unix socket. PgBouncer refuses to run as root, so under root it runs as the
same unprivileged user as the embedded PostgreSQL. Not installed: the fixture fails (a test CI
skips is a defect); `.ci/run` installs Debian's `pgbouncer` package.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from pgshift.embedded import _server_user, free_port
from tests.conftest import PgServer
from tests.helpers import find_program

# Roles the tests may log in as through PgBouncer (its auth file must list every user, even with trust).
APP_ROLES = ("pgshift_app_old", "pgshift_app_new")
POOL_SIZE = 3  # fewer server connections than client threads, so transactions share them


def find_pgbouncer() -> str | None:
    return find_program("pgbouncer", "/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


@dataclass
class PgBouncer:
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    version: str

    def url(self, dbname: str, user: str = "postgres") -> str:
        return f"postgresql://{quote(user)}@127.0.0.1:{self.port}/{quote(dbname)}"

    def log(self) -> str:
        try:
            return (self.root / "pgbouncer.log").read_text(errors="replace")
        except OSError:
            return ""


def start_pgbouncer(pg_server: PgServer, *, pool_mode: str = "transaction") -> PgBouncer:
    binary = find_pgbouncer()
    if binary is None:
        pytest.fail("PgBouncer is not installed (no pgbouncer on PATH, in /usr/sbin or /usr/bin). `.ci/run` "
                    "installs it (Debian's pgbouncer package: apt-get install pgbouncer); the PgBouncer tests "
                    "need a real one and are not skipped.")
    cluster = pg_server.cluster
    if cluster is None:
        pytest.fail("The PgBouncer tests need the suite's embedded cluster (PGSHIFT_TEST_DSN is set): PgBouncer "
                    "is put in front of its Unix socket.")
    state = cluster.state()
    assert state is not None
    root = Path(tempfile.mkdtemp(prefix="pgshift-test-pgbouncer-"))
    port = free_port()
    (root / "userlist.txt").write_text("".join(f'"{name}" ""\n' for name in ("postgres", *APP_ROLES)))
    (root / "pgbouncer.ini").write_text(f"""\
[databases]
* = host={state.socket_dir} port={state.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {root / "userlist.txt"}
admin_users = postgres
pool_mode = {pool_mode}
default_pool_size = {POOL_SIZE}
max_client_conn = 500
server_round_robin = 0
logfile = {root / "pgbouncer.log"}
pidfile = {root / "pgbouncer.pid"}
""")
    user = _server_user()
    kwargs: dict[str, object] = {}
    if user is not None:  # PgBouncer refuses to run as root
        for path in (root, *root.iterdir()):
            os.chown(path, user.pw_uid, user.pw_gid)
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.split("\n")[0]
    process = subprocess.Popen([binary, str(root / "pgbouncer.ini")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=root, **kwargs)  # type: ignore[call-overload]
    bouncer = PgBouncer(root, port, process, version.strip())
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return bouncer
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_pgbouncer(bouncer)
                pytest.fail(f"PgBouncer did not start (exit {process.returncode}): {bouncer.log()[-2000:]}")
            time.sleep(0.05)


def stop_pgbouncer(bouncer: PgBouncer) -> None:
    if bouncer.process.poll() is None:
        bouncer.process.terminate()
        try:
            bouncer.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            bouncer.process.kill()
            bouncer.process.wait(timeout=10)
    shutil.rmtree(bouncer.root, ignore_errors=True)


@pytest.fixture(scope="module")
def pgbouncer(pg_server: PgServer) -> Iterator[PgBouncer]:
    bouncer = start_pgbouncer(pg_server)
    try:
        yield bouncer
    finally:
        stop_pgbouncer(bouncer)
