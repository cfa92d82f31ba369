"""Benchmark: large migration files linted and applied by pgshift, against `psql -1 -f` of the
same SQL (what PostgreSQL itself needs), with each process's peak memory.

    .venv/bin/python bench/large_files/run.py                                  # 10 and 50 MB, 6 formats
    .venv/bin/python bench/large_files/run.py --sizes 2 --formats native       # quick
    .venv/bin/python bench/large_files/run.py --sizes 10 --formats native --before /path/to/old/src
    .venv/bin/python bench/large_files/run.py --sizes 10 --formats native --also check,rehearse

The files are a seed/data migration (bench/large_files/gen.py): a CREATE TABLE, multi-row INSERTs
of ~4 kB (40 rows each), a plpgsql function with a $$ body every 50 INSERTs and a comment every 10,
in pgshift's native format, dbmate's, golang-migrate's, goose's (functions in StatementBegin blocks),
Flyway's (V and U scripts) and Prisma's. Starts its own PostgreSQL
(pgshift.embedded) unless --admin-dsn is given; each migrate and psql run gets a fresh database
and the row count is checked after it. For each size the tools run in interleaved rounds
(--repeat), and the best wall time is reported with that run's CPU time (user+sys of the client
process: what a busy machine distorts least) and the largest peak RSS over the rounds.
``--before SRC`` also runs an older pgshift checkout's src/ (PYTHONPATH) on the same files (each
format given), side by side, each run capped at --limit seconds. ``--also`` adds `pgshift check` (default) and
`pgshift rehearse --no-down` (apply on a clone) of the same file, pending on a fresh database.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gen  # noqa: E402  (a script folder, not a package)

ROOT = HERE.parents[1]
RESULTS = ROOT / "bench" / "results"
FORMATS = gen.FORMATS


@dataclass
class Run:
    seconds: float
    cpu_seconds: float
    peak_mb: float
    ok: bool
    capped: bool = False


# Peak RSS is the process's own VmHWM (/proc/PID/status), not wait4's ru_maxrss: Linux carries the
# maxrss of the image a process replaced over exec, and a child forked (or vforked) from this bench
# starts with the bench's own peak, which holds the generated SQL (psql "took" 180 MB at 50 MB).
# A Python child writes its VmHWM at exit (PEAK_HOOK, to the file named by PEAK_FILE); any other is
# sampled while it runs.
PEAK_FILE = "BENCH_PEAK_FILE"  # not PGSHIFT_*: pgshift rejects unknown PGSHIFT_ variables
PEAK_HOOK = """\
import atexit, os, runpy, sys
def _peak():
    with open('/proc/self/status') as status, open(os.environ['BENCH_PEAK_FILE'], 'w') as out:
        out.write(next(line for line in status if line.startswith('VmHWM:')).split()[1])
atexit.register(_peak)
sys.argv[0] = 'pgshift'
runpy.run_module('pgshift', run_name='__main__', alter_sys=True)
"""


def pgshift_argv() -> list[str]:
    """`python -m pgshift`, writing its peak RSS at exit (see PEAK_HOOK)."""
    return [sys.executable, "-c", PEAK_HOOK]


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            return int(next(line for line in status if line.startswith("VmHWM:")).split()[1])
    except (OSError, StopIteration, ValueError):
        return 0


def measure(argv: list[str], *, env: dict[str, str] | None = None, limit: float = 1800) -> Run:
    """Wall time, CPU time (user+sys, all threads) and peak RSS (VmHWM) of one child process."""
    env = dict(os.environ if env is None else env)
    fd, peak_path = tempfile.mkstemp(prefix="pgshift-bench-peak-")
    os.close(fd)
    env[PEAK_FILE] = peak_path
    try:
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        deadline = start + limit
        sampled = 0
        while True:
            sampled = max(sampled, _hwm_kb(child.pid))
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                child.kill()
                pid, status, usage = os.wait4(child.pid, 0)
                child.returncode = -9
                return Run(limit, usage.ru_utime + usage.ru_stime, sampled / 1024, False, capped=True)
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        written = Path(peak_path).read_text().strip()
        peak_kb = max(sampled, int(written) if written.isdigit() else 0)
    finally:
        os.unlink(peak_path)
    code = os.waitstatus_to_exitcode(status)
    child.returncode = code
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if code not in (0, 1):  # lint exits 1 on findings at the fail level
        print(f"  ! {' '.join(argv[:4])}... exited {code}: {stderr.strip()[-400:]}", file=sys.stderr)
    return Run(round(seconds, 2), round(usage.ru_utime + usage.ru_stime, 2), round(peak_kb / 1024, 1),
               code in (0, 1))


class Server:
    def __init__(self, admin_dsn: str | None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pgshift-bench-large-"))
        self.cluster = None
        if admin_dsn is None:
            from pgshift.embedded import EmbeddedCluster

            self.cluster = EmbeddedCluster(self.root / "cluster")
            self.cluster.start(tcp=False)
            admin_dsn = self.cluster.socket_dsn()
        self.admin = admin_dsn
        self.psql = str(self.cluster.bindir / "psql") if self.cluster else shutil.which("psql") or "psql"

    def fresh(self) -> str:
        name = f"lf_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        params = psycopg.conninfo.conninfo_to_dict(self.admin)
        params["dbname"] = name
        return psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]

    def rows_and_drop(self, dsn: str) -> int:
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT count(*) FROM seed_customers").fetchone()
        name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(str(name))))
        return int(row[0]) if row else 0

    def drop(self, dsn: str) -> None:
        name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(str(name))))

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.destroy()
        shutil.rmtree(self.root, ignore_errors=True)


def pgshift_env(src: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGSHIFT_", "DATABASE_URL"))}
    if src:
        env["PYTHONPATH"] = src
    return env


def bench(args: argparse.Namespace) -> list[dict[str, object]]:
    server = Server(args.admin_dsn)
    work = Path(tempfile.mkdtemp(prefix="pgshift-bench-large-files-"))
    rows: list[dict[str, object]] = []
    pgshift = pgshift_argv()
    try:
        for size in args.sizes:
            folders = {fmt: work / f"{fmt}-{size}" / "migrations" for fmt in args.formats}
            for fmt, folder in folders.items():
                gen.write(folder, fmt, int(size * 1_000_000))
            body = gen.body(int(size * 1_000_000))
            up = work / f"up-{size}.sql"  # what psql runs: the up part alone
            up.write_text(body)
            statements = 1 + body.count("INSERT INTO") + body.count("CREATE OR REPLACE FUNCTION")
            expected_rows = body.count("INSERT INTO") * 40
            del body
            variants: dict[str, tuple[str, str | None]] = {fmt: (fmt, None) for fmt in args.formats}
            if args.before:
                variants.update({f"{fmt} (before)": (fmt, args.before) for fmt in args.formats})
            runs: dict[tuple[str, str], list[Run]] = {}
            for _ in range(args.repeat):
                dsn = server.fresh()
                psql = measure([server.psql, "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", str(up), dsn])
                psql.ok = psql.ok and server.rows_and_drop(dsn) == expected_rows
                runs.setdefault(("psql -1 -f", "apply"), []).append(psql)
                for name, (fmt, src) in variants.items():
                    env = pgshift_env(src)
                    lint = measure([*pgshift, "lint", "-o", "json", str(folders[fmt])], env=env, limit=args.limit)
                    runs.setdefault((name, "lint"), []).append(lint)
                    dsn = server.fresh()
                    migrate = measure([*pgshift, "migrate", "--database-url", dsn, "--dir", str(folders[fmt])],
                                      env=env, limit=args.limit)
                    migrate.ok = migrate.ok and not migrate.capped and server.rows_and_drop(dsn) == expected_rows
                    runs.setdefault((name, "migrate"), []).append(migrate)
                    for command in args.also:
                        dsn = server.fresh()
                        argv = {"check": ["check"], "rehearse": ["rehearse", "--no-down"]}[command]
                        extra = measure([*pgshift, *argv, "--database-url", dsn, "--dir", str(folders[fmt])],
                                        env=env, limit=args.limit)
                        server.drop(dsn)
                        runs.setdefault((name, command), []).append(extra)
                    print(f"{size:g} MB {name}: lint {lint.seconds}s, migrate {migrate.seconds}s, "
                          f"psql {psql.seconds}s", file=sys.stderr)
            for (name, what), found in runs.items():
                best = min(found, key=lambda r: r.seconds)
                rows.append({"size_mb": size, "tool": name, "what": what, "statements": statements,
                             **asdict(best), "peak_mb": max(r.peak_mb for r in found),
                             "ok": all(r.ok for r in found), "runs": len(found)})
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def report(rows: list[dict[str, object]]) -> str:
    def cell(size: object, tool: str, what: str) -> dict[str, object] | None:
        return next((r for r in rows if r["size_mb"] == size and r["tool"] == tool and r["what"] == what), None)

    def fmt(r: dict[str, object] | None) -> str:
        if r is None:
            return "-"
        mark = "" if r["ok"] else (" (capped)" if r["capped"] else " (FAILED)")
        return f"{r['seconds']} s ({r['cpu_seconds']} CPU s), {r['peak_mb']:.0f} MB{mark}"

    lines = ["| size | format | statements | `pgshift lint` | `pgshift migrate` | `psql -1 -f` | migrate / psql |",
             "|---:|---|---:|---|---|---|---:|"]
    sizes = sorted({float(str(r["size_mb"])) for r in rows})
    for size in sizes:
        psql = cell(size, "psql -1 -f", "apply")
        for tool in dict.fromkeys(str(r["tool"]) for r in rows if r["size_mb"] == size and r["what"] == "lint"):
            lint, migrate = cell(size, tool, "lint"), cell(size, tool, "migrate")
            ratio = (f"{float(str(migrate['seconds'])) / float(str(psql['seconds'])):.2f}x"
                     if migrate and psql and migrate["ok"] else "-")
            statements = lint["statements"] if lint else "-"
            lines.append(f"| {size:g} MB | {tool} | {statements} | {fmt(lint)} | {fmt(migrate)} | {fmt(psql)} "
                         f"| {ratio} |")
    others = [r for r in rows if r["what"] in ("check", "rehearse")]
    if others:
        lines += ["", "| size | format | command | time, client CPU, peak RSS |", "|---:|---|---|---|"]
        lines += [f"| {float(str(r['size_mb'])):g} MB | {r['tool']} | `pgshift {r['what']}` | {fmt(r)} |"
                  for r in others]
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        lines.append("")
        lines.append(f"Linearity ({large:g} MB vs {small:g} MB, client CPU seconds per MB, 1.00 = linear):")
        for tool in dict.fromkeys(str(r["tool"]) for r in rows if r["what"] != "apply"):
            for what in ("lint", "migrate"):
                a, b = cell(small, tool, what), cell(large, tool, what)
                if a and b and a["ok"] and b["ok"]:
                    per_small = float(str(a["cpu_seconds"])) / small
                    per_large = float(str(b["cpu_seconds"])) / large
                    lines.append(f"- {tool} {what}: {per_large / per_small:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda s: [float(x) for x in s.split(",")], default=[10, 50],
                        help="file sizes in MB, comma-separated (default 10,50)")
    parser.add_argument("--formats", type=lambda s: s.split(","), default=list(FORMATS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--also", type=lambda s: [c for c in s.split(",") if c], default=["check"],
                        help="other commands to run on each file: check, rehearse (default check; '' for none)")
    parser.add_argument("--before", default=None, help="an older pgshift's src/ folder to compare with")
    parser.add_argument("--limit", type=float, default=1800, help="cap on one pgshift run, seconds")
    parser.add_argument("--admin-dsn", default=None, help="an existing server instead of an embedded one")
    args = parser.parse_args()
    rows = bench(args)
    text = report(rows)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"large-files-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": {k: v for k, v in vars(args).items()}, "rows": rows}, indent=2))
    print(f"\nwritten {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
