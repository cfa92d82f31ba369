"""A throwaway local PostgreSQL cluster: for the test suite, `pgshift demo` and `pgshift dev`.

Server binaries come from the machine (PGSHIFT_PG_BINDIR, ``pg_config --bindir``, PATH, the usual
package locations) and, failing that, from the ``pgserver`` wheel. PostgreSQL refuses to run as
root, so a root process runs the server as an unprivileged system user. The server listens on a
Unix socket in the cluster directory and, when asked, on 127.0.0.1 only.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from pgshift.errors import EmbeddedServerError

_REQUIRED = ("initdb", "pg_ctl", "postgres")
_PACKAGE_GLOBS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/pgsql-*/bin",
    "/usr/local/pgsql/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
    "/Applications/Postgres.app/Contents/Versions/*/bin",
)
SUPERUSER = "postgres"


def _has_server(bindir: Path) -> bool:
    return all((bindir / name).is_file() and os.access(bindir / name, os.X_OK) for name in _REQUIRED)


def _version_key(path: str) -> tuple[int, ...]:
    digits = "".join(c if c.isdigit() else " " for c in path).split()
    return tuple(int(d) for d in digits)


def candidate_bindirs() -> list[Path]:
    """Where server binaries may be, in order of preference."""
    return list(_candidate_bindirs(os.environ.get("PGSHIFT_PG_BINDIR"), os.environ.get("PATH")))


@functools.lru_cache(maxsize=8)
def _candidate_bindirs(env: str | None, path: str | None) -> tuple[Path, ...]:
    # Once per process for the same setting and PATH: ``pg_config --bindir`` is a process start
    # (10-25 ms), which a backup looking up pg_dump and then pg_restore paid twice.
    found: list[Path] = []
    if env:
        found.append(Path(env))
    if pg_config := shutil.which("pg_config", path=path):
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            found.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    if initdb := shutil.which("initdb", path=path):
        found.append(Path(initdb).resolve().parent)
    for pattern in _PACKAGE_GLOBS:
        found.extend(Path(p) for p in sorted(glob.glob(pattern), key=_version_key, reverse=True))
    return tuple(found)


def pgserver_bindir() -> Path | None:
    """The binaries inside the pgserver wheel, the fallback (imported only when needed)."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("pgserver")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def find_bindir() -> Path:
    for bindir in [*candidate_bindirs(), pgserver_bindir()]:
        if bindir is not None and _has_server(bindir):
            return bindir
    looked = ", ".join(str(b) for b in candidate_bindirs()) or "nothing on PATH or in the usual package folders"
    env = os.environ.get("PGSHIFT_PG_BINDIR")
    wheel = pgserver_bindir()
    fallback = ("the optional pgserver wheel that ships them is not installed" if wheel is None
                else f"the pgserver wheel has none in {wheel}")
    raise EmbeddedServerError(
        "No PostgreSQL server binaries (initdb, pg_ctl, postgres) were found (looked in: "
        f"{looked}; PGSHIFT_PG_BINDIR is {repr(env) if env else 'not set'}), and {fallback}.",
        hint="install the extra with `pip install 'pgshift[embedded]'`, or install the server package "
        "(e.g. apt-get install postgresql) and set PGSHIFT_PG_BINDIR to its bin directory if it is "
        "not found on its own; or point pgshift at an existing server with DATABASE_URL.",
    )


def _server_user() -> pwd.struct_passwd | None:
    """The account the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgshift"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "pgshift"],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam("pgshift")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ClusterState:
    """What a running cluster's clients need; saved as state.json in the cluster directory."""

    bindir: str
    port: int
    socket_dir: str
    tcp: bool
    password: str
    version: str


class EmbeddedCluster:
    """A cluster in ``root``: ``root/data``, ``root/sock``, ``root/server.log``, ``root/state.json``."""

    def __init__(self, root: Path | str, *, bindir: Path | None = None) -> None:
        self.root = Path(root).resolve()
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.log = self.root / "server.log"
        self.state_file = self.root / "state.json"
        self._bindir = bindir

    # -- discovery -------------------------------------------------------------------------
    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir

    def state(self) -> ClusterState | None:
        try:
            return ClusterState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def is_running(self) -> bool:
        if not (self.data / "postmaster.pid").exists():
            return False
        result = self._run(["pg_ctl", "-D", str(self.data), "status"], check=False)
        return result.returncode == 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, *, tcp: bool = True, settings: dict[str, str] | None = None) -> ClusterState:
        """Initialise if needed and start; returns the connection state. Idempotent."""
        if self.is_running() and (state := self.state()) is not None:
            return state
        self.root.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        password = self._init_if_needed()
        port = free_port()
        options = {
            "port": str(port),
            "unix_socket_directories": str(self.sock),
            "listen_addresses": "127.0.0.1" if tcp else "",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "128MB",
            "max_wal_size": "2GB",
            **(settings or {}),
        }
        opts = " ".join(f"-c {k}={v}" if v else f"-c {k}=''" for k, v in options.items())
        result = self._run(
            ["pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", opts, "start"],
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedServerError(
                f"The embedded PostgreSQL in {self.data} did not start: "
                f"{(result.stderr or result.stdout).strip()} {self._log_tail()}"
            )
        version = self._run([str(self.bindir / "postgres"), "--version"]).stdout.strip()
        state = ClusterState(str(self.bindir), port, str(self.sock), tcp, password, version)
        self.state_file.write_text(json.dumps(asdict(state)))
        self.state_file.chmod(0o600)
        return state

    def start_standby(self, root: Path | str, *, tcp: bool = True) -> EmbeddedCluster:
        """A streaming standby of this (running) cluster in ``root``, on a port of its own: a base backup
        taken with ``pg_basebackup -R`` over the local socket, started as a hot standby."""
        state = self._require_state()
        standby = EmbeddedCluster(root, bindir=self.bindir)
        standby.root.mkdir(parents=True, exist_ok=True)
        standby.sock.mkdir(exist_ok=True)
        pwfile = standby.root / "superuser.pw"  # the roles come with the backup, the password too
        pwfile.write_text(state.password + "\n")
        pwfile.chmod(0o600)
        standby._chown_tree(_server_user())
        self._run(["pg_basebackup", "-D", str(standby.data), "-R", "-X", "stream", "-c", "fast", "--no-sync",
                   "-h", state.socket_dir, "-p", str(state.port), "-U", SUPERUSER])
        standby.start(tcp=tcp)
        return standby

    def stop(self) -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        result = self._run(
            ["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop"], check=False
        )
        if result.returncode != 0 and self.is_running():
            raise EmbeddedServerError(
                f"The embedded PostgreSQL in {self.data} did not stop: {result.stderr.strip()}"
            )

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- connection strings ----------------------------------------------------------------
    def socket_dsn(self, dbname: str = "postgres") -> str:
        state = self._require_state()
        return f"postgresql://{SUPERUSER}@/{quote(dbname)}?host={quote(state.socket_dir, safe='')}&port={state.port}"

    def passfile_dsn(self, dbname: str = "postgres") -> str:
        """A TCP URL whose password is read by libpq from a 0600 passfile, never shown."""
        state = self._require_state()
        passfile = self.root / "pgpass"
        passfile.touch(mode=0o600)
        passfile.write_text(f"127.0.0.1:{state.port}:*:{SUPERUSER}:{state.password}\n")
        return (
            f"postgresql://{SUPERUSER}@127.0.0.1:{state.port}/{quote(dbname)}"
            f"?passfile={quote(str(passfile), safe='')}"
        )

    def tcp_dsn(self, dbname: str = "postgres", *, password: str | None = None) -> str:
        state = self._require_state()
        if not state.tcp:
            raise EmbeddedServerError("This embedded cluster was started without TCP.")
        pw = state.password if password is None else password
        return f"postgresql://{SUPERUSER}:{quote(pw, safe='')}@127.0.0.1:{state.port}/{quote(dbname)}"

    # -- internals -------------------------------------------------------------------------
    def _require_state(self) -> ClusterState:
        state = self.state()
        if state is None:
            raise EmbeddedServerError(f"No embedded PostgreSQL has been started in {self.root}.")
        return state

    def _init_if_needed(self) -> str:
        pwfile = self.root / "superuser.pw"
        user = _server_user()
        if (self.data / "PG_VERSION").exists():
            self._chown_tree(user)
            state = self.state()
            return state.password if state else pwfile.read_text().strip()
        password = secrets.token_urlsafe(18)
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        self._chown_tree(user)
        result = self._run(
            [
                "initdb", "-D", str(self.data), "-U", SUPERUSER, "--pwfile", str(pwfile),
                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                "--locale=C", "--no-sync",
            ],
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedServerError(
                f"initdb failed in {self.data}: {(result.stderr or result.stdout).strip()}"
            )
        return password

    def _chown_tree(self, user: pwd.struct_passwd | None) -> None:
        if user is None:
            return
        for path in [self.root, *self.root.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
        # The server user must be able to reach the cluster directory.
        for parent in self.root.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)

    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        exe = argv[0] if os.path.isabs(argv[0]) else str(self.bindir / argv[0])
        user = _server_user()
        kwargs: dict[str, object] = {}
        if user is not None:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        try:
            result = subprocess.run(
                [exe, *argv[1:]], capture_output=True, text=True, env=env, cwd=str(self.root),
                timeout=120, **kwargs,  # type: ignore[call-overload]
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise EmbeddedServerError(f"Could not run {exe}: {exc}") from exc
        if check and result.returncode != 0:
            raise EmbeddedServerError(f"{exe} failed: {(result.stderr or result.stdout).strip()}")
        return result  # type: ignore[no-any-return]

    def _log_tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()[-5:]
        except OSError:
            return ""
        return "Server log: " + " | ".join(lines)


def wait_for_socket(cluster: EmbeddedCluster, timeout: float = 10.0) -> None:
    """Wait until the server accepts connections (pg_ctl -w normally suffices)."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(cluster.socket_dsn(), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
