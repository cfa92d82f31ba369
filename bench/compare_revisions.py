"""Compare two revisions of pgshift in one bench run: a base git revision against the working tree.

    .venv/bin/python bench/compare_revisions.py                        # base: merge-base with main, else HEAD~1
    .venv/bin/python bench/compare_revisions.py --base HEAD~5 --only backfill
    .venv/bin/python bench/compare_revisions.py --base v0.1 --repeat 5 --full
    make bench-compare BASE=main ONLY=backfill,lint

The base is checked out into a temporary ``git worktree`` (removed at the end, also after Ctrl-C or
a failure). Both sides run the CURRENT tree's bench scripts with this interpreter, so the
measurement is the same; only PYTHONPATH differs (``<side>/src`` first, in front of the editable
install), so the base needs no install of its own. Every Python process of a run (the bench and
each ``pgshift`` CLI it starts) notes at exit which pgshift it imported (a ``sitecustomize`` on that
PYTHONPATH); a process that imported pgshift from anywhere but its side's src stops the comparison,
as do identical src/pgshift trees: the same code measured twice is refused.

Benches: zero_downtime, runner, lint, backup, backfill, at their quick sizes (bench/run_all.py
QUICK) unless --full, without what does not change between revisions (peer tools, the naive side of
the zero-downtime bench). Runs are interleaved, base then candidate, --repeat times per bench, so the
machine's load drifts over both alike. Each bench gets a table of its pgshift figures: the median
of each side, candidate/base, each side's range and a verdict. Noise: a measured figure is called
slower/faster (or worse/better) only when the two sides' runs do not overlap at all AND the medians
differ by more than 3%; otherwise "same within noise". With 3 runs a side, chance alone keeps the
runs of an unchanged figure apart 1 time in 10 (5 runs: 1 in 126), so over a bench's dozen figures
expect a false verdict now and then: rerun with --repeat 5 before believing one. With fewer than 3
runs a side there is no verdict. Counted figures (failed queries, hazards found) have no noise: any
difference is reported.

Exit status: 0 every run succeeded (whatever the verdicts say: the human judges them); 1 a bench
run failed; 2 bad arguments; 3 refused (no such revision, or both sides would run the same code);
130 interrupted (Ctrl-C or SIGTERM).
Logs and every run's JSON go to bench/results/compare-<time>/, the comparison to
bench/results/compare-<time>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DEFAULT_BENCHES = ("zero_downtime", "runner", "lint", "backup", "backfill")
NOISE_FLOOR = 0.03  # medians closer than this are "same" even when the runs do not overlap
MIN_RUNS = 3
IMPORT_LOG = "COMPARE_REVISIONS_IMPORT_LOG"  # not PGSHIFT_*: pgshift rejects unknown PGSHIFT_ variables
EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_INTERRUPTED = 1, 2, 3, 130

# Put first on a run's PYTHONPATH: every Python process of the run notes, at exit, where its
# pgshift came from. Chains to any other sitecustomize it shadows.
HOOK = '''\
"""Written by bench/compare_revisions.py: note at exit which pgshift this process imported."""
import atexit
import os
import sys


def _note_pgshift():
    log, package = os.environ.get("COMPARE_REVISIONS_IMPORT_LOG"), sys.modules.get("pgshift")
    if not log or getattr(package, "__file__", None) is None:
        return
    import json
    root = os.path.dirname(os.path.realpath(package.__file__))
    strays = sorted(m.__file__ for name, m in list(sys.modules.items())
                    if name.startswith("pgshift.") and getattr(m, "__file__", None)
                    and not os.path.realpath(m.__file__).startswith(root + os.sep))
    with open(log, "a", encoding="utf-8") as out:
        out.write(json.dumps({"pid": os.getpid(), "pgshift": root, "strays": strays, "argv": sys.argv[:3]}) + "\\n")


atexit.register(_note_pgshift)
_here = os.path.dirname(os.path.abspath(__file__))
import importlib.machinery, importlib.util  # noqa: E401,E402
_spec = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or ".") != _here])
if _spec is not None and _spec.loader is not None:
    _spec.loader.exec_module(importlib.util.module_from_spec(_spec))
'''


class Refused(Exception):
    """Nothing (or not the intended thing) would be compared: exit 3."""


# -- figures ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    better: str = "lower"  # or "higher"
    counted: bool = False  # an exact count: no noise, any difference is reported
    words: tuple[str, str] = ("slower", "faster")  # (worse, better)


def backfill_metrics(data: dict[str, Any]) -> list[Metric]:
    ours = data["pgshift"]
    out = [Metric("rows/s", ours["rows_per_s"], "higher"),
           Metric("longest lock ms", ours["longest_lock_ms"], words=("worse", "better")),
           Metric("median batch ms", ours["median_batch_ms"], words=("longer", "shorter")),
           Metric("batches", ours["batches"], words=("more", "fewer"))]
    if data.get("ratio") is not None:
        out.insert(1, Metric("share of one UPDATE's rate", data["ratio"], "higher"))
    if data.get("contended"):
        out.append(Metric("app's worst UPDATE ms (contended)", data["contended"]["app_worst_ms"],
                          words=("worse", "better")))
    return out


def backup_metrics(data: dict[str, Any]) -> list[Metric]:
    out = [Metric(f"{row['variant'].removeprefix('pgshift backup ')}: median s", row["median"])
           for row in data["rows"] if not row["variant"].startswith("pg_dump")]
    # Against pg_dump in the same round: steadier than seconds on a machine whose load drifts.
    out += [Metric(f"pgshift / pg_dump, {label}", 1 + figures["paired_median"])
            for label, figures in data["overhead"].items()]
    return out


def lint_metrics(data: dict[str, Any]) -> list[Metric]:
    out = [Metric(f"{row['tool']}, {row['statements']} statements: s", row["median"])
           for row in data["speed"] if str(row["tool"]).startswith("pgshift")]
    cases = data["coverage"]
    out.append(Metric("hazard cases flagged", sum(1 for r in cases if r["expect"] == "hazard" and r["pgshift"]),
                      "higher", counted=True, words=("fewer", "more")))
    out.append(Metric("safe cases flagged (false positives)",
                      sum(1 for r in cases if r["expect"] == "safe" and r["pgshift"]),
                      counted=True, words=("more", "fewer")))
    return out


def runner_metrics(data: dict[str, Any]) -> list[Metric]:
    out: list[Metric] = []
    for row in data["results"]:
        if str(row["tool"]).startswith("pgshift"):
            out += [Metric(f"{row['tool']}: median s", row["median_s"]),
                    Metric(f"{row['tool']}: client CPU s", row["client_cpu_s"]),
                    Metric(f"{row['tool']}: server commits", row["commits_per_run"], words=("more", "fewer"))]
    return out


def zero_downtime_metrics(data: dict[str, Any]) -> list[Metric]:
    out: list[Metric] = []
    for run in data["runs"]:
        if run["side"] != "pgshift":
            continue
        where = f"{run['case']}, {'blocked' if run['blocked'] else 'quiet'}"
        out += [Metric(f"{where}: worst stall ms", run["max_ms"], words=("worse", "better")),
                Metric(f"{where}: p99 ms", run["p99_ms"], words=("worse", "better")),
                Metric(f"{where}: failed queries", run["failed"], counted=True, words=("more", "fewer")),
                Metric(f"{where}: change failed", 1 if run["migration_error"] else 0, counted=True,
                       words=("worse", "better")),
                Metric(f"{where}: change s", run["total_s"]),
                Metric(f"{where}: lock retries", run["lock_retries"], words=("more", "fewer"))]
    return out


# What does not change between revisions is left out: the peer tools and the naive side.
PGSHIFT_ONLY: dict[str, list[str]] = {
    "lint": ["--no-squawk"], "runner": ["--tools", "pgshift-cli,pgshift-api"], "zero_downtime": ["--sides", "pgshift"],
}
STARTS_CLI = ("lint", "runner")  # lint: `python -m pgshift lint`; runner: its pgshift-cli tool, bin/pgshift
EXTRACT: dict[str, Callable[[dict[str, Any]], list[Metric]]] = {
    "backfill": backfill_metrics, "backup": backup_metrics, "lint": lint_metrics,
    "runner": runner_metrics, "zero_downtime": zero_downtime_metrics,
}


def verdict(base: list[float], cand: list[float], *, better: str = "lower", counted: bool = False,
            words: tuple[str, str] = ("slower", "faster")) -> str:
    """How the candidate's runs compare with the base's (the rule is in the module docstring)."""
    if not base or not cand:
        return "no figures"
    b, c = statistics.median(base), statistics.median(cand)
    worse = (c > b) if better == "lower" else (c < b)
    if counted:
        return "same" if b == c else words[0] if worse else words[1]
    if min(len(base), len(cand)) < MIN_RUNS:
        return f"no verdict (under {MIN_RUNS} runs)"
    apart = min(cand) > max(base) or max(cand) < min(base)
    relative = abs(c - b) / abs(b) if b else (0.0 if c == b else float("inf"))
    if not apart or relative <= NOISE_FLOOR:
        return "same within noise"
    return words[0] if worse else words[1]


def number(value: float) -> str:
    if value != value:  # NaN
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def table(rows: list[tuple[Metric, list[float], list[float]]]) -> str:
    lines = ["| metric | base median | candidate median | candidate/base | base runs | candidate runs | verdict |",
             "|---|---:|---:|---:|---|---|---|"]
    for metric, base, cand in rows:
        b = statistics.median(base) if base else float("nan")
        c = statistics.median(cand) if cand else float("nan")
        ratio = f"{c / b:.2f}x" if base and cand and b else "-"
        spread = [f"{number(min(v))}–{number(max(v))}" if v else "-" for v in (base, cand)]
        lines.append(f"| {metric.name} | {number(b)} | {number(c)} | {ratio} | {spread[0]} | {spread[1]} | "
                     f"{verdict(base, cand, better=metric.better, counted=metric.counted, words=metric.words)} |")
    return "\n".join(lines)


# -- the two sides ---------------------------------------------------------------------------
def git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise Refused(f"git {' '.join(args)} failed in {root}: {result.stderr.strip()}")
    return result.stdout.strip()


def default_base(root: Path) -> str:
    """The merge-base with main when this branch has commits of its own, else HEAD~1."""
    head = git(root, "rev-parse", "HEAD")
    for ref in ("main", "origin/main"):
        try:
            base = git(root, "merge-base", "HEAD", ref)
        except Refused:
            continue
        if base != head:
            return base
    return "HEAD~1"


def resolve(root: Path, rev: str) -> str:
    try:
        return git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except Refused:
        raise Refused(f"--base {rev}: no such revision in {root} (try a commit, a branch or HEAD~N)") from None


def fingerprint(package: Path) -> str:
    """A hash of every file of the package (bytecode aside): equal hashes mean the same code."""
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@contextmanager
def base_worktree(root: Path, commit: str, holder: Path) -> Iterator[Path]:
    """``commit`` checked out (detached) under ``holder``; removed on the way out, whatever happened."""
    path = holder / "base"
    git(root, "worktree", "add", "--detach", "--quiet", str(path), commit)
    try:
        yield path
    finally:
        removed = subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(path)],
                                 capture_output=True, check=False).returncode == 0
        if not removed:  # its folder went missing: drop the stale entry
            shutil.rmtree(path, ignore_errors=True)
            subprocess.run(["git", "-C", str(root), "worktree", "prune"], capture_output=True, check=False)


@dataclass
class Side:
    label: str  # base | candidate
    src: Path
    described: str
    hook: Path

    def env(self, log: Path | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != IMPORT_LOG}
        env["PYTHONPATH"] = os.pathsep.join([str(self.hook), str(self.src), *filter(None, [env.get("PYTHONPATH")])])
        if log is not None:
            env[IMPORT_LOG] = str(log)
        return env

    def imports(self, log: Path, *, cli: bool = False) -> tuple[int, str | None, bool]:
        """How many processes noted in ``log`` imported pgshift; why they did not all run this side's
        pgshift (None when they did); and whether one imported it from elsewhere (the worst case).
        ``cli``: the run must have started the pgshift CLI."""
        notes = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        if not notes:
            return 0, "no process of the run imported pgshift, so the run measured nothing of this side", False
        expected = (self.src / "pgshift").resolve()
        for note in notes:
            if Path(note["pgshift"]).resolve() != expected or note["strays"]:
                return len(notes), (f"process {' '.join(note['argv'])} imported pgshift from {note['pgshift']}"
                                    f"{' and ' + ', '.join(note['strays']) if note['strays'] else ''}, "
                                    f"not from {expected}"), True
        # A CLI started with a cleaned environment (no PYTHONPATH) would run the installed pgshift
        # unnoticed: it also loses this hook, so its absence from the notes gives it away.
        if cli and not any(Path(note["argv"][0]).name in ("pgshift", "__main__.py") for note in notes if note["argv"]):
            return len(notes), ("the bench starts the pgshift CLI, but no CLI process noted this side's pgshift: "
                                "it was started without this run's PYTHONPATH, so it ran the installed pgshift"), False
        return len(notes), None, False


def check_sides(base: Side, candidate: Side, scratch: Path) -> None:
    """Refuse when both sides hold the same code, or when pgshift (imported here or through its
    CLI, as the benches start it) would not come from the side's own src."""
    if not (base.src / "pgshift").is_dir():
        raise Refused(f"the base ({base.described}) has no src/pgshift to run")
    if fingerprint(base.src / "pgshift") == fingerprint(candidate.src / "pgshift"):
        raise Refused(f"src/pgshift is the same in the base ({base.described}) and the candidate "
                      f"({candidate.described}): the comparison would run the same code twice. Pick an older "
                      "--base, or change the working tree first")
    cli = Path(sys.executable).parent / "pgshift"
    for side in (base, candidate):
        # Bytecode first, so that neither side compiles pgshift inside a timed run.
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(side.src / "pgshift")],
                       env=side.env(None), capture_output=True, check=False)
        log = scratch / f"preflight-{side.label}.log"
        probe = subprocess.run([sys.executable, "-c", "import pgshift; print(pgshift.__file__)"],
                               env=side.env(log), capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            raise Refused(f"the {side.label} ({side.described}) does not import: {probe.stderr.strip()[-500:]}")
        if cli.exists():
            subprocess.run([str(cli), "--help"], env=side.env(log), capture_output=True, check=False)
        _count, problem, _elsewhere = side.imports(log, cli=cli.exists())
        if problem:
            raise Refused(f"{side.label}: {problem}; the comparison would not run the {side.label}'s code")
        print(f"{side.label:10} {side.described}: pgshift from {probe.stdout.strip()}"
              f"{' (and the pgshift CLI)' if cli.exists() else ''}")


# -- running ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchSpec:
    name: str
    script: Path
    quick: list[str]
    extract: Callable[[dict[str, Any]], list[Metric]]
    cli: bool = False  # starts the pgshift CLI in subprocesses (each must run the side's pgshift too)

    pgshift_only: list[str] = field(default_factory=list)

    def argv(self, *, full: bool, json_out: Path) -> list[str]:
        return [sys.executable, str(self.script), *([] if full else self.quick), *self.pgshift_only,
                "--json", str(json_out)]


@dataclass
class Outcome:
    seconds: float
    processes: int  # Python processes of the run that imported the side's pgshift
    metrics: list[Metric] = field(default_factory=list)
    problem: str | None = None


def run_child(argv: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> int:
    """Run a bench; when we are interrupted, let it stop its own PostgreSQL before giving up on it."""
    with log.open("w") as out:
        child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            return child.wait()
        except BaseException:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            raise


def run_once(spec: BenchSpec, side: Side, *, full: bool, logs: Path, round_no: int, cwd: Path) -> Outcome:
    stem = f"{spec.name}-{round_no}-{side.label}"
    json_out, imports, log = logs / f"{stem}.json", logs / f"{stem}.imports", logs / f"{stem}.log"
    started = time.monotonic()
    code = run_child(spec.argv(full=full, json_out=json_out), cwd=cwd, env=side.env(imports), log=log)
    seconds = time.monotonic() - started
    processes, wrong, elsewhere = side.imports(imports, cli=spec.cli)
    outcome = Outcome(seconds, processes)
    if wrong and (elsewhere or code == 0):  # a crashed bench may not have got as far as pgshift: a failure
        raise Refused(f"{spec.name}, {side.label}: {wrong}; see {log}")
    if code != 0:
        outcome.problem = f"exit {code}: {' | '.join(log.read_text(errors='replace').strip().splitlines()[-3:])}"
    elif not json_out.exists():
        outcome.problem = f"wrote no {json_out.name}"
    else:
        try:
            outcome.metrics = spec.extract(json.loads(json_out.read_text()))
        except (KeyError, TypeError, ValueError) as exc:
            outcome.problem = f"its figures could not be read ({type(exc).__name__}: {exc})"
    return outcome


def collate(outcomes: dict[str, list[Outcome]]) -> list[tuple[Metric, list[float], list[float]]]:
    """Each metric (in the order the bench reports them) with the base's and the candidate's values."""
    first: dict[str, Metric] = {}
    values: dict[str, dict[str, list[float]]] = {}
    for label in ("base", "candidate"):
        for outcome in outcomes[label]:
            for metric in outcome.metrics:
                first.setdefault(metric.name, metric)
                values.setdefault(metric.name, {"base": [], "candidate": []})[label].append(metric.value)
    return [(metric, values[name]["base"], values[name]["candidate"]) for name, metric in first.items()]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (5 min {five:.2f}) on {os.cpu_count()} cores"


def compare(specs: list[BenchSpec], *, root: Path, base_rev: str, repeat: int, full: bool,
            results: Path) -> int:
    commit = resolve(root, base_rev)
    dirty = git(root, "status", "--porcelain", "--", "src")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    results.mkdir(parents=True, exist_ok=True)
    logs = results / f"compare-{stamp}"
    for attempt in range(2, 100):  # two comparisons in the same second keep their logs apart
        try:
            logs.mkdir()
            break
        except FileExistsError:
            logs = results / f"compare-{stamp}-{attempt}"
    holder = Path(tempfile.mkdtemp(prefix="pgshift-compare-"))
    (holder / "hook").mkdir()
    (holder / "hook" / "sitecustomize.py").write_text(HOOK)
    load_at_start = load()
    failed: list[str] = []
    report: dict[str, Any] = {}
    try:
        with base_worktree(root, commit, holder) as tree:
            base = Side("base", tree / "src", f"{base_rev} = {commit[:10]}", holder / "hook")
            candidate = Side("candidate", root / "src", f"working tree at {git(root, 'rev-parse', '--short', 'HEAD')}"
                             f"{' + uncommitted changes in src' if dirty else ''}", holder / "hook")
            check_sides(base, candidate, logs)
            print(f"load average at start: {load_at_start}; {repeat} interleaved round(s) per bench, "
                  f"{'full' if full else 'quick'} sizes; logs in {logs}\n", flush=True)
            for spec in specs:
                outcomes: dict[str, list[Outcome]] = {"base": [], "candidate": []}
                for round_no in range(1, repeat + 1):
                    for side in (base, candidate):
                        outcome = run_once(spec, side, full=full, logs=logs, round_no=round_no, cwd=root)
                        outcomes[side.label].append(outcome)
                        print(f"[{spec.name} {round_no}/{repeat}] {side.label:10}{outcome.seconds:7.1f} s  "
                              f"{outcome.problem or 'ok'} ({outcome.processes} process(es) ran the "
                              f"{side.label}'s pgshift)", flush=True)
                        if outcome.problem:
                            failed.append(f"{spec.name} ({side.label}, round {round_no}): {outcome.problem}")
                    if any(o.problem for side_outcomes in outcomes.values() for o in side_outcomes):
                        print(f"[{spec.name}] a run failed: its remaining rounds are skipped", flush=True)
                        break
                rows = collate(outcomes)
                print(f"\n### {spec.name}\n\n{table(rows) if rows else '(no figures)'}\n", flush=True)
                report[spec.name] = [{"metric": m.name, "better": m.better, "counted": m.counted, "base": b,
                                      "candidate": c, "verdict": verdict(b, c, better=m.better, counted=m.counted,
                                                                         words=m.words)} for m, b, c in rows]
            describe = {"base": base.described, "candidate": candidate.described}
    finally:
        shutil.rmtree(holder, ignore_errors=True)
    load_at_end = load()
    print(f"load average at start: {load_at_start}; at end: {load_at_end}")
    print(f"noise: a figure differs only when the two sides' runs do not overlap and the medians are more than "
          f"{NOISE_FLOOR:.0%} apart (counted figures: any difference). With {repeat} runs a side, chance alone "
          f"keeps the runs of an unchanged figure apart 1 time in {math.comb(2 * repeat, repeat) // 2}: "
          "over many figures expect a few such verdicts; rerun with a higher --repeat before believing one")
    (results / f"{logs.name}.json").write_text(json.dumps(
        {"at": stamp, **describe, "repeat": repeat, "full": full, "load_at_start": load_at_start,
         "load_at_end": load_at_end, "benches": report, "failed": failed}, indent=2))
    for problem in failed:
        print(f"FAILED: {problem}", file=sys.stderr)
    return EXIT_FAILED if failed else 0


def quick_arguments() -> dict[str, list[str]]:
    spec = importlib.util.spec_from_file_location("pgshift_bench_run_all_for_compare", BENCH / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    quick: dict[str, list[str]] = module.QUICK
    return quick


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--base", default=None, help="git revision to compare against (default: the merge-base "
                        "with main when this branch has commits of its own, else HEAD~1)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(DEFAULT_BENCHES)}")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds per bench (default 3)")
    parser.add_argument("--full", action="store_true", help="each bench's full size (hours), not its quick one")
    args = parser.parse_args(argv)
    args.only = [n.strip() for n in args.only.split(",") if n.strip()] or list(DEFAULT_BENCHES)
    unknown = [n for n in args.only if n not in EXTRACT]
    if unknown:
        parser.error(f"--only: no comparable bench named {', '.join(unknown)} (have: {', '.join(DEFAULT_BENCHES)})")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the clean-up of the worktree


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quick = quick_arguments()
    specs = [BenchSpec(name, BENCH / name / "run.py", quick[name], EXTRACT[name], cli=name in STARTS_CLI,
                       pgshift_only=PGSHIFT_ONLY.get(name, [])) for name in args.only]
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        return compare(specs, root=ROOT, base_rev=args.base or default_base(ROOT), repeat=args.repeat,
                       full=args.full, results=BENCH / "results")
    except Refused as exc:
        print(f"compare_revisions: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("compare_revisions: interrupted; the base's worktree is removed", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
