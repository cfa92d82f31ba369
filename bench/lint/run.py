"""pgshift lint benchmark: speed (50,000 mixed statements in every output format, linearity
5k to 50k) against squawk in the same run, and a coverage table over bench/lint/cases.

    .venv/bin/python bench/lint/run.py [--quick] [--no-squawk] [--json PATH]

squawk is installed with pip into bench/.venv-squawk (gitignored) on first use. Results are
printed as Markdown and written to bench/results/lint.md.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SQUAWK_VENV = ROOT / "bench" / ".venv-squawk"
SQUAWK = SQUAWK_VENV / "bin" / "squawk"
WORK = ROOT / "bench" / "results" / "lint-work"
PGSHIFT = [sys.executable, "-m", "pgshift", "lint"]

# A mix of hazardous and safe statements, typical of real migration folders.
TEMPLATES = [
    "CREATE TABLE t{i} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, at timestamptz)",
    "CREATE INDEX t{i}_name_idx ON t{i} (name)",
    "ALTER TABLE users ADD COLUMN c{i} text",
    "ALTER TABLE users ADD COLUMN d{i} integer NOT NULL",
    "ALTER TABLE orders ALTER COLUMN c{i} TYPE bigint",
    "ALTER TABLE orders ADD CONSTRAINT fk{i} FOREIGN KEY (user_id) REFERENCES users (id)",
    "ALTER TABLE orders ADD CONSTRAINT ck{i} CHECK (qty > {i}) NOT VALID",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_c{i}_idx ON orders (c{i})",
    "UPDATE users SET c{i} = 'x' WHERE id BETWEEN {i} AND {i} + 1000",
    "UPDATE users SET c{i} = 'x'",
    "ALTER TABLE users ALTER COLUMN c{i} SET NOT NULL",
    "ALTER TABLE users RENAME COLUMN c{i} TO e{i}",
    "DROP INDEX IF EXISTS old_idx_{i}",
    "INSERT INTO audit (id, note) VALUES ({i}, 'migration step {i}')",
    "ALTER TABLE users DROP COLUMN IF EXISTS z{i}",
    "COMMENT ON COLUMN users.c{i} IS 'added by migration {i}'",
    "SELECT {i}",
    "ALTER TABLE users ADD COLUMN v{i} varchar(40) DEFAULT 'n/a'",
    "CREATE TABLE IF NOT EXISTS u{i} (id serial PRIMARY KEY, payload json, code char(3))",
    "DELETE FROM sessions WHERE expires_at < now()",
]


def make_file(n: int) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"mixed_{n}.sql"
    if not path.exists():
        lines = [TEMPLATES[i % len(TEMPLATES)].format(i=i) + ";" for i in range(n)]
        path.write_text("\n".join(lines) + "\n")
    return path


def ensure_squawk() -> str | None:
    if not SQUAWK.exists():
        venv.create(SQUAWK_VENV, with_pip=True)
        subprocess.run([str(SQUAWK_VENV / "bin" / "pip"), "install", "-q", "squawk-cli"], check=False)
    if not SQUAWK.exists():
        return None
    return subprocess.run([str(SQUAWK), "--version"], capture_output=True, text=True).stdout.strip()


def pgshift_env() -> dict[str, str]:
    """pgshift runs as an installed package does: from compiled bytecode (pip compiles it at
    install time). Where PYTHONDONTWRITEBYTECODE is set, every run would compile pgshift's
    source again, so the bytecode goes to a cache of our own, warmed by one untimed run."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    env["PYTHONPYCACHEPREFIX"] = str(WORK / "pycache")
    return env


def _run_once(cmd: list[str], env: dict[str, str] | None, limit: float) -> tuple[float, float]:
    """(wall, CPU) seconds of one run; CPU is the child's user + sys time, which a loaded machine changes
    far less than wall time (the one to compare tools by when other jobs share the cores)."""
    start = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=WORK, env=env)
    while True:
        pid, _status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = 0  # reaped here: keeps Popen from waiting on it again
            return time.perf_counter() - start, usage.ru_utime + usage.ru_stime
        if time.perf_counter() - start > limit:
            process.kill()
            _pid, _status, usage = os.wait4(process.pid, 0)
            process.returncode = -9
            return limit, usage.ru_utime + usage.ru_stime
        time.sleep(0.01)


def speed(sizes: list[int], have_squawk: bool, repeat: int, limit: float = 600) -> list[dict[str, object]]:
    """Every tool on the same input in interleaved rounds, so background noise hits all of them;
    the best and the median of each. A tool slower than 30 s runs once (the point is made)."""
    rows: list[dict[str, object]] = []
    env = pgshift_env()
    subprocess.run([*PGSHIFT, "-o", "json", str(make_file(1000))], capture_output=True, cwd=WORK, env=env)
    for n in sizes:
        path = str(make_file(n))
        runs: dict[str, tuple[list[str], dict[str, str] | None]] = {
            "pgshift json": ([*PGSHIFT, "-o", "json", "--pg-version", "16", path], env),
            "pgshift tty": ([*PGSHIFT, "-o", "tty", "--pg-version", "16", path], env),
            **{f"pgshift {fmt}": ([*PGSHIFT, "-o", fmt, "--pg-version", "16", path], env)
               for fmt in ("sarif", "github", "gitlab")},
        }
        if have_squawk:
            runs["squawk json"] = ([str(SQUAWK), "--reporter", "json", path], None)
            runs["squawk tty"] = ([str(SQUAWK), "--reporter", "tty", path], None)
        times: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repeat):
            for name, (cmd, tool_env) in runs.items():
                if not times[name] or times[name][-1] <= 30:
                    wall, used = _run_once(cmd, tool_env, limit)
                    times[name].append(wall)
                    cpu[name].append(used)
        for name, seconds in times.items():
            best, median = min(seconds), statistics.median(seconds)
            rows.append({"tool": name, "statements": n, "seconds": round(best, 3),
                         "median": round(median, 3), "runs": len(seconds), "capped": best >= limit,
                         "statements_per_s": int(n / best), "cpu": round(min(cpu[name]), 3),
                         "cpu_median": round(statistics.median(cpu[name]), 3)})
    return rows


def _header(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^-- ([a-z-]+): (\S+)$", path.read_text(), re.M))


def coverage(have_squawk: bool) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for case in sorted((HERE / "cases").glob("*.sql")):
        head = _header(case)
        pg = head.get("pg-version", "16")
        out = subprocess.run([*PGSHIFT, "-o", "json", "--pg-version", pg, str(case)], capture_output=True,
                             text=True, cwd=WORK, env=pgshift_env())
        data = json.loads(out.stdout)
        ours = sorted({f["rule"] for f in data["findings"] if not f["suppressed"]})
        if data["parse_errors"]:
            ours.append("parse-error")
        theirs: list[str] | None = None
        if have_squawk:
            sq = subprocess.run([str(SQUAWK), "--reporter", "json", "--pg-version", f"{pg}.0", str(case)],
                                capture_output=True, text=True, cwd=WORK)
            try:
                theirs = sorted({v["rule_name"] for v in json.loads(sq.stdout or "[]")})
            except json.JSONDecodeError:
                theirs = ["(squawk failed)"]
        rows.append({"case": case.stem, "expect": head["expect"], "group": head["group"], "pg": pg,
                     "pgshift": ours, "squawk": theirs})
    return rows


def report(version: str | None, speed_rows: list[dict[str, object]], cov: list[dict[str, object]]) -> str:
    out = [f"# pgshift lint benchmark\n\nsquawk: {version or 'not available'}; python {sys.version.split()[0]}\n",
           "## Speed (wall clock and CPU = user + sys, incl. process start; interleaved runs, best and median)\n",
           f"Load average at the end: {os.getloadavg()[0]:.1f}\n",
           "| tool | statements | best s | median s | CPU min s | CPU median s | runs | statements/s (best) |",
           "|---|---|---|---|---|---|---|---|"]
    out += [f"| {r['tool']} | {r['statements']} | {'>' if r.get('capped') else ''}{r['seconds']} | "
            f"{r['median']} | {r.get('cpu', '-')} | {r.get('cpu_median', '-')} | {r['runs']} | "
            f"{'<' if r.get('capped') else ''}{r['statements_per_s']} |"
            for r in speed_rows]
    by = {(r["tool"], r["statements"]): float(str(r["seconds"])) for r in speed_rows}
    sizes = sorted({int(str(r["statements"])) for r in speed_rows})
    if len(sizes) > 1:
        small, big = sizes[0], sizes[-1]
        out.append(f"\nLinearity ({big} vs {small} statements; {big / small:.0f}.0 is linear):\n")
        for tool in sorted({str(r["tool"]) for r in speed_rows}):
            if (tool, small) in by and (tool, big) in by:
                out.append(f"- {tool}: x{by[(tool, big)] / by[(tool, small)]:.2f}")
    if ("squawk json", sizes[-1]) in by:
        median = {(r["tool"], r["statements"]): float(str(r["median"])) for r in speed_rows}
        key = ("pgshift json", sizes[-1]), ("squawk json", sizes[-1])
        out.append(f"\npgshift json / squawk json time at {sizes[-1]}: best x{by[key[0]] / by[key[1]]:.2f}, "
                   f"median x{median[key[0]] / median[key[1]]:.2f} (target <= 1: at most squawk's time)")
        cpu = {(r["tool"], r["statements"]): (float(str(r["cpu"])), float(str(r["cpu_median"]))) for r in speed_rows}
        out.append(f"pgshift json / squawk json CPU at {sizes[-1]}: min x{cpu[key[0]][0] / cpu[key[1]][0]:.2f}, "
                   f"median x{cpu[key[0]][1] / cpu[key[1]][1]:.2f}")
    out += ["\n## Coverage\n", "| case | expect | group | pg | pgshift | squawk |", "|---|---|---|---|---|---|"]
    for r in cov:
        ours = r["pgshift"] or []
        theirs = r["squawk"]
        out.append(f"| {r['case']} | {r['expect']} | {r['group']} | {r['pg']} | "
                   f"{'yes' if ours else 'no'} {', '.join(ours)} | "  # type: ignore[arg-type]
                   f"{'-' if theirs is None else ('yes ' + ', '.join(theirs)) if theirs else 'no'} |")
    hazards = [r for r in cov if r["expect"] == "hazard"]
    safe = [r for r in cov if r["expect"] == "safe"]
    summary = [
        f"\nhazard cases: {len(hazards)}; pgshift flags {sum(1 for r in hazards if r['pgshift'])}",
        f"safe cases: {len(safe)}; pgshift false positives {sum(1 for r in safe if r['pgshift'])}",
    ]
    if any(r["squawk"] is not None for r in cov):
        summary += [
            f"squawk flags {sum(1 for r in hazards if r['squawk'])} hazard cases, "
            f"false positives on {sum(1 for r in safe if r['squawk'])} safe cases",
            "hazards squawk flags that pgshift misses: "
            + (", ".join(str(r["case"]) for r in hazards if r["squawk"] and not r["pgshift"]) or "none"),
            "hazards pgshift flags that squawk misses: "
            + (", ".join(str(r["case"]) for r in hazards if r["pgshift"] and not r["squawk"]) or "none"),
        ]
    return "\n".join(out + summary) + "\n"


def main() -> int:
    if "-h" in sys.argv or "--help" in sys.argv:  # usage only: the bench takes minutes
        print(__doc__)
        return 0
    quick = "--quick" in sys.argv
    version = None if "--no-squawk" in sys.argv else ensure_squawk()  # --no-squawk: no network
    # Issue #17 asks for linear growth from 5k to 50k statements; 10k is the size earlier results used.
    sizes = [1000, 5000] if quick else [5_000, 10_000, 50_000]
    speed_rows = speed(sizes, version is not None, 1 if quick else 5)
    cov = coverage(version is not None)
    text = report(version, speed_rows, cov)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "lint.md").write_text(text)
    if "--json" in sys.argv:  # machine-readable figures, for bench/compare_revisions.py
        Path(sys.argv[sys.argv.index("--json") + 1]).write_text(
            json.dumps({"squawk": version, "speed": speed_rows, "coverage": cov}, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
