"""The runner bench's moving parts: generate N equivalent migrations per tool, run each tool
against its own fresh database, time it, and check that every table was really created.

Imported by run.py (the command) and by tests/bench/test_runner_bench.py (a tiny smoke run).
Every tool runs in a subprocess through its own CLI; pgshift's Python API is timed in-process as
a library user would call it. Bytecode goes to a bench-owned PYTHONPYCACHEPREFIX that an untimed
warm-up run fills, as after a normal install (pip compiles wheels; the editable pgshift checkout
would otherwise be compiled on every run). Alembic's revision files and env.py are project files,
not installed ones: their bytecode is deleted before every Alembic run, as on a fresh checkout.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import conninfo, sql

REPO = Path(__file__).resolve().parents[2]
PGSHIFT_TOOLS = ("pgshift-cli", "pgshift-api")
PEER_TOOLS = ("alembic", "alembic-tpm", "yoyo")
ALL_TOOLS = PGSHIFT_TOOLS + PEER_TOOLS
PEER_PACKAGES = ("alembic", "sqlalchemy", "psycopg[binary]", "yoyo-migrations")

# What each tool does per migration, for the fairness notes in the report.
PER_MIGRATION = {
    "pgshift-cli": "own transaction per migration (SET LOCAL lock_timeout/statement_timeout, the DDL); "
    "ledger row INSERT before and UPDATE after, plus an events INSERT, each autocommitted; "
    "session advisory lock held for the whole run; pglast-parses every file",
    "pgshift-api": "same as pgshift-cli, called in-process (no interpreter start-up or imports)",
    "alembic": "default env.py: ONE transaction around all migrations; one alembic_version "
    "UPDATE per migration; no lock; revision files are Python modules imported each run",
    "alembic-tpm": "env.py with transaction_per_migration=True: own transaction per migration, "
    "alembic_version UPDATE inside it",
    "yoyo": "own transaction per migration; _yoyo_migration INSERT and _yoyo_log INSERT per "
    "migration; yoyo_lock row taken for the run",
}


@dataclass
class Run:
    tool: str
    seconds: float
    tables: int
    commits: int
    client_cpu_s: float = 0.0  # user+sys of the tool's process (less sensitive to a busy machine)


@dataclass
class ToolResult:
    tool: str
    count: int
    runs: list[Run] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def min_s(self) -> float:
        return min(r.seconds for r in self.runs)

    @property
    def per_second(self) -> float:
        return self.count / self.median_s if self.median_s > 0 else 0.0

    @property
    def client_cpu_s(self) -> float:
        return statistics.median(r.client_cpu_s for r in self.runs)

    def as_json(self) -> dict[str, Any]:
        return {
            "tool": self.tool, "count": self.count, "median_s": round(self.median_s, 4),
            "migrations_per_s": round(self.per_second, 1),
            "min_s": round(self.min_s, 4), "best_migrations_per_s": round(self.count / self.min_s, 1),
            "client_cpu_s": round(self.client_cpu_s, 3),
            "commits_per_run": statistics.median(r.commits for r in self.runs),
            "runs": [asdict(r) for r in self.runs], "per_migration": PER_MIGRATION[self.tool],
        }


# -- generating migrations -------------------------------------------------------------------
def up_sql(i: int) -> str:
    return f"CREATE TABLE t_{i} (id int PRIMARY KEY, v text)"


def down_sql(i: int) -> str:
    return f"DROP TABLE t_{i}"


def write_pgshift(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, count + 1):
        body = f"-- pgshift:up\n{up_sql(i)};\n-- pgshift:down\n{down_sql(i)};\n"
        (folder / f"{i:05d}_create_t_{i}.sql").write_text(body)
    return folder


def write_yoyo(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, count + 1):
        (folder / f"{i:05d}_create_t_{i}.sql").write_text(f"{up_sql(i)};\n")
        (folder / f"{i:05d}_create_t_{i}.rollback.sql").write_text(f"{down_sql(i)};\n")
    return folder


ALEMBIC_ENV = '''\
import os

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

engine = create_engine(os.environ["BENCH_ALEMBIC_URL"], poolclass=NullPool)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        transaction_per_migration=os.environ.get("BENCH_ALEMBIC_TPM") == "1",
    )
    with context.begin_transaction():
        context.run_migrations()
'''

ALEMBIC_REVISION = '''\
from alembic import op

revision = "{rev}"
down_revision = {down}
branch_labels = None
depends_on = None


def upgrade():
    op.execute("{up}")


def downgrade():
    op.execute("{down_sql}")
'''


def write_alembic(folder: Path, count: int) -> Path:
    """An alembic project with SQL-only (op.execute) revisions, chained r00001 → r0000N."""
    versions = folder / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    (folder / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s\n")
    (folder / "env.py").write_text(ALEMBIC_ENV)
    for i in range(1, count + 1):
        down = f'"r{i - 1:05d}"' if i > 1 else "None"
        (versions / f"r{i:05d}_create_t_{i}.py").write_text(
            ALEMBIC_REVISION.format(rev=f"r{i:05d}", down=down, up=up_sql(i), down_sql=down_sql(i))
        )
    return folder


# -- URLs per tool ---------------------------------------------------------------------------
def _params(dsn: str) -> dict[str, Any]:
    return {k: v for k, v in conninfo.conninfo_to_dict(dsn).items() if v is not None}


def sqlalchemy_url(dsn: str, scheme: str = "postgresql+psycopg") -> str:
    """The same server and database as a URL that SQLAlchemy and yoyo understand."""
    p = _params(dsn)
    auth = quote(str(p.get("user", "")), safe="")
    if "password" in p:
        auth += ":" + quote(str(p["password"]), safe="")
    query = {k: str(v) for k, v in p.items() if k not in ("user", "password", "dbname")}
    qs = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    return f"{scheme}://{auth}@/{quote(str(p['dbname']), safe='')}" + (f"?{qs}" if qs else "")


# -- databases -------------------------------------------------------------------------------
class Server:
    """Fresh empty databases on one server, reached through an admin DSN."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn

    def dsn_for(self, dbname: str) -> str:
        params = _params(self.admin_dsn)
        params["dbname"] = dbname
        return conninfo.make_conninfo(**params)

    def create(self) -> str:
        name = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        return name

    def drop(self, name: str) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def commits(self, name: str) -> int:
        """Committed transactions in ``name`` so far (pg_stat_database, flushed at backend exit)."""
        query = "SELECT coalesce(xact_commit, 0) FROM pg_stat_database WHERE datname = %s"
        last = -1
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            for _ in range(50):  # the tool's backend flushes its counters as it exits: wait for that
                conn.execute("SELECT pg_stat_clear_snapshot()")
                busy = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
                ).fetchone()
                row = conn.execute(query, (name,)).fetchone()
                value = int(row[0]) if row else 0
                if busy and busy[0] == 0 and value == last:
                    break
                last = value
                time.sleep(0.05)
        return last

    def tables(self, name: str) -> int:
        with psycopg.connect(self.dsn_for(name), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename ~ '^t_[0-9]+$'"
            ).fetchone()
        return int(row[0]) if row else 0


# -- running each tool -----------------------------------------------------------------------
def clean_env(pycache: Path | None = None, **extra: str) -> dict[str, str]:
    """The caller's environment without settings that would steer a tool elsewhere; with
    ``pycache``, bytecode is written and read there."""
    drop = ("DATABASE_URL", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k not in drop}
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env.update(extra)
    return env


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return elapsed


@dataclass
class Context:
    """Where things are: generated migrations per tool, a scratch cwd, and the peers' venv."""

    workdir: Path
    count: int
    pgshift_bin: Path = field(default_factory=lambda: Path(sys.executable).parent / "pgshift")
    peers_bin: Path | None = None
    dirs: dict[str, Path] = field(default_factory=dict)
    pycache: Path | None = None

    def __post_init__(self) -> None:
        self.cache = self.pycache or self.workdir / "pycache"

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(self.cache, **extra)

    def forget_bytecode(self, folder: Path) -> None:
        """Drop the cached bytecode of project files under ``folder`` (a fresh checkout has none)."""
        mirrored = folder.resolve().relative_to(folder.resolve().anchor)
        shutil.rmtree(self.cache / mirrored, ignore_errors=True)

    def migrations(self, tool: str) -> Path:
        kind = {"pgshift-cli": "pgshift", "pgshift-api": "pgshift", "alembic-tpm": "alembic"}.get(tool, tool)
        if kind not in self.dirs:
            writer = {"pgshift": write_pgshift, "alembic": write_alembic, "yoyo": write_yoyo}[kind]
            self.dirs[kind] = writer(self.workdir / "migrations" / kind, self.count)
        return self.dirs[kind]

    @property
    def cwd(self) -> Path:
        path = self.workdir / "cwd"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def peer(self, exe: str) -> str:
        if self.peers_bin is None:
            raise RuntimeError("the peer tools need a peers venv (see ensure_peers_venv)")
        return str(self.peers_bin / exe)


def run_pgshift_cli(ctx: Context, dsn: str) -> float:
    folder = ctx.migrations("pgshift-cli")
    argv = [str(ctx.pgshift_bin), "migrate", "--database-url", dsn, "--dir", str(folder)]
    return _run(argv, ctx.cwd, ctx.env())


def run_pgshift_api(ctx: Context, dsn: str) -> float:
    from pgshift import api
    from pgshift.config import load_settings

    folder = ctx.migrations("pgshift-api")
    started = time.perf_counter()
    settings = load_settings(overrides={"database_url": dsn, "migrations_dir": str(folder)},
                             environ={}, cwd=ctx.cwd)
    report = api.migrate(settings)
    elapsed = time.perf_counter() - started
    if len(report.applied) != ctx.count:
        raise RuntimeError(f"pgshift API applied {len(report.applied)} of {ctx.count} migrations")
    return elapsed


def run_alembic(ctx: Context, dsn: str, *, per_migration: bool = False) -> float:
    folder = ctx.migrations("alembic")
    env = ctx.env(BENCH_ALEMBIC_URL=sqlalchemy_url(dsn), BENCH_ALEMBIC_TPM="1" if per_migration else "0")
    ctx.forget_bytecode(folder)
    return _run([ctx.peer("alembic"), "-c", str(folder / "alembic.ini"), "upgrade", "head"], ctx.cwd, env)


def run_yoyo(ctx: Context, dsn: str) -> float:
    argv = [ctx.peer("yoyo"), "apply", "--batch", "--no-config-file",
            "--database", sqlalchemy_url(dsn), str(ctx.migrations("yoyo"))]
    return _run(argv, ctx.cwd, ctx.env())


RUNNERS: dict[str, Callable[[Context, str], float]] = {
    "pgshift-cli": run_pgshift_cli,
    "pgshift-api": run_pgshift_api,
    "alembic": run_alembic,
    "alembic-tpm": lambda ctx, dsn: run_alembic(ctx, dsn, per_migration=True),
    "yoyo": run_yoyo,
}

STARTUP_ARGV: dict[str, Callable[[Context], list[str]]] = {
    "pgshift-cli": lambda ctx: [str(ctx.pgshift_bin), "--help"],
    "alembic": lambda ctx: [ctx.peer("alembic"), "--help"],
    "yoyo": lambda ctx: [ctx.peer("yoyo"), "--help"],
}


def _cpu() -> float:
    """CPU seconds of this process plus its finished children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure_once(ctx: Context, server: Server, tool: str, *, keep: bool = False) -> tuple[Run, str]:
    """One run of ``tool`` on a fresh database; checks that all tables exist."""
    db = server.create()
    try:
        cpu_before = _cpu()
        seconds = RUNNERS[tool](ctx, server.dsn_for(db))
        cpu = _cpu() - cpu_before
        commits = server.commits(db)  # before our own check adds to the count
        tables = server.tables(db)
        if tables != ctx.count:
            raise RuntimeError(f"{tool} created {tables} of {ctx.count} tables in {db}")
    finally:
        if not keep:
            server.drop(db)
    return Run(tool, round(seconds, 4), tables, commits, round(cpu, 3)), db


def measure(ctx: Context, server: Server, tools: list[str], repeat: int,
            progress: Callable[[str], None] | None = None) -> dict[str, ToolResult]:
    """Each round runs every tool once (interleaved, so drift on the machine hits all alike)."""
    results = {tool: ToolResult(tool, ctx.count) for tool in tools}
    for tool in tools:
        ctx.migrations(tool)  # generate before timing
    warm_up(ctx, server, tools)
    for round_no in range(1, repeat + 1):
        for tool in tools:
            run, _db = measure_once(ctx, server, tool)
            results[tool].runs.append(run)
            if progress:
                progress(f"round {round_no}/{repeat} {tool}: {run.seconds:.3f}s")
    return results


def warm_up(ctx: Context, server: Server, tools: list[str], count: int = 3) -> None:
    """One untimed small run per tool, sharing ``ctx``'s bytecode cache: installed code is compiled."""
    small = Context(workdir=ctx.workdir / "warm-up", count=count, pgshift_bin=ctx.pgshift_bin,
                    peers_bin=ctx.peers_bin, pycache=ctx.cache)
    for tool in tools:
        measure_once(small, server, tool)


def startup_seconds(ctx: Context, tool: str, repeat: int = 3) -> float | None:
    """Median time of ``<cli> --help``: interpreter start-up plus the CLI's imports."""
    make = STARTUP_ARGV.get(tool)
    if make is None:
        return None
    return statistics.median(_run(make(ctx), ctx.cwd, ctx.env()) for _ in range(repeat))


def ensure_peers_venv(venv: Path, python: str = "python3") -> Path:
    """Create ``venv`` with the peer tools from PyPI if it is missing; returns its bin dir."""
    bin_dir = venv / "bin"
    if all((bin_dir / exe).exists() for exe in ("alembic", "yoyo")):
        return bin_dir
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True)
    return bin_dir


def peer_versions(bin_dir: Path) -> dict[str, str]:
    names = ("alembic", "SQLAlchemy", "psycopg", "yoyo-migrations")
    code = f"import importlib.metadata as m; print(';'.join(p + '=' + m.version(p) for p in {names!r}))"
    argv = [str(bin_dir / "python"), "-c", code]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.strip().split(";"))


# -- status / validate on a long history --------------------------------------------------------
SCALING_COMMANDS = ("status", "validate")


@dataclass
class ScalingResult:
    """Median CLI wall time of ``status`` and ``validate`` per history length, all migrations applied."""

    seconds: dict[str, dict[int, list[float]]] = field(default_factory=dict)

    def median(self, command: str, count: int) -> float:
        return statistics.median(self.seconds[command][count])

    def ratio(self, command: str, small: int, large: int) -> float:
        return self.median(command, large) / self.median(command, small)

    def as_json(self) -> dict[str, Any]:
        return {command: {str(n): {"median_s": round(statistics.median(v), 4), "runs": v}
                          for n, v in per_count.items()}
                for command, per_count in self.seconds.items()}


def measure_scaling(ctx: Context, server: Server, counts: list[int], repeat: int,
                    progress: Callable[[str], None] | None = None) -> ScalingResult:
    """Apply each history once (through the API, untimed), then time ``pgshift status`` and
    ``pgshift validate`` on every length in interleaved rounds, so drift hits all lengths alike."""
    from pgshift import api
    from pgshift.config import load_settings

    prepared: dict[int, tuple[Path, str]] = {}
    for count in counts:
        folder = write_pgshift(ctx.workdir / "scaling" / str(count), count)
        db = server.create()
        settings = load_settings(overrides={"database_url": server.dsn_for(db), "migrations_dir": str(folder)},
                                 environ={}, cwd=ctx.cwd)
        applied = len(api.migrate(settings).applied)
        if applied != count:
            raise RuntimeError(f"scaling setup applied {applied} of {count} migrations")
        prepared[count] = (folder, db)
    result = ScalingResult({c: {n: [] for n in counts} for c in SCALING_COMMANDS})
    try:
        for folder, db in prepared.values():  # untimed: compile the CLI's bytecode once
            _run([str(ctx.pgshift_bin), "status", "--database-url", server.dsn_for(db), "--dir", str(folder)],
                 ctx.cwd, ctx.env())
        for round_no in range(1, repeat + 1):
            for count, (folder, db) in prepared.items():
                for command in SCALING_COMMANDS:
                    argv = [str(ctx.pgshift_bin), command, "--database-url", server.dsn_for(db), "--dir", str(folder)]
                    seconds = _run(argv, ctx.cwd, ctx.env())
                    result.seconds[command][count].append(round(seconds, 4))
                    if progress:
                        progress(f"round {round_no}/{repeat} {command} on {count}: {seconds:.3f}s")
    finally:
        for _folder, db in prepared.values():
            server.drop(db)
    return result
