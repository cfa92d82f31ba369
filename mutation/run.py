"""Mutation testing of pgshift's safety-critical functions (`make mutation`; outside CI).

For each target of mutation/targets.toml: copy src/ and tests/ to a scratch folder, run the mapped
tests once unmutated (they must pass; their time sets the per-mutant timeout), then apply each
mutant of the listed functions in turn with cosmic-ray and run the mapped tests against it.
A mutant is killed when the tests fail (or time out), survived when they pass.

All mutants share one embedded PostgreSQL cluster (PGSHIFT_TEST_CLUSTER), so a mutant costs a
test run, not an initdb. Results go to mutation/results/<target>.json and a summary is printed.

    python mutation/run.py                      # every target, in file order
    python mutation/run.py password-masking     # some targets
    python mutation/run.py --list               # mutant counts only, nothing run
    python mutation/run.py --minutes 50         # stop starting mutants after 50 minutes
    python mutation/run.py --survivors          # after adding tests: rerun last run's survivors (and timeouts)
    python mutation/run.py --resume             # a run cut short by --minutes: run only the mutants it left
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cosmic_ray.plugins
import parso
from carry import carried  # mutation/, the script's folder
from cosmic_ray.ast import ast_nodes, get_ast_from_path
from cosmic_ray.mutating import mutate_and_test
from cosmic_ray.operators.operator import Example, Operator
from cosmic_ray.work_item import MutationSpec, TestOutcome, WorkerOutcome

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "mutation" / "results"

# cosmic-ray replaces a binary or comparison operator by every other one (about ten mutants a
# site, mostly type errors or duplicates). Keep the ones a plausible slip would make.
BINARY_PARTNERS = {"Add": {"Sub"}, "Sub": {"Add"}, "Mul": {"Div"}, "Div": {"Mul"}, "FloorDiv": {"Mul"},
                   "Mod": {"FloorDiv"}, "Pow": {"Mul"}, "LShift": {"RShift"}, "RShift": {"LShift"},
                   "BitOr": {"BitAnd"}, "BitAnd": {"BitOr"}, "BitXor": {"BitOr"}}
COMPARISON_PARTNERS = {"Lt": {"LtE", "GtE"}, "LtE": {"Lt", "Gt"}, "Gt": {"GtE", "LtE"}, "GtE": {"Gt", "Lt"},
                       "Eq": {"NotEq"}, "NotEq": {"Eq"}, "Is": {"IsNot"}, "IsNot": {"Is"}, "In": {"NotIn"},
                       "NotIn": {"In"}}


class RemoveCallStatement(Operator):  # type: ignore[misc]
    """A call used as a statement becomes ``None``: the forgotten step (a repair, a log, a counter)."""

    def mutation_positions(self, node: Any) -> Iterator[tuple[tuple[int, int], tuple[int, int]]]:
        if (node.type == "atom_expr" and node.parent is not None and node.parent.type == "simple_stmt"
                and node.children[-1].type == "trailer" and node.children[-1].children[0].value == "("):
            yield (node.start_pos, node.end_pos)

    def mutate(self, node: Any, index: int) -> Any:
        assert index == 0
        return parso.parse(node.get_first_leaf().prefix + "None").children[0]

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("log(x)\n", "None\n"),)


cosmic_ray.plugins.OPERATOR_PROVIDERS["pgshift"] = {"RemoveCallStatement": RemoveCallStatement}


@dataclass
class Target:
    name: str
    module: str
    functions: list[str]
    tests: list[str]
    max_mutants: int = 60


@dataclass
class Mutant:
    operator: str
    occurrence: int
    line: int
    function: str
    outcome: str = "not run"  # killed | timeout | survived | incompetent | no-mutation | not run
    seconds: float = 0.0
    diff: str = ""
    # Why a survivor is not a gap: "equivalent: ..." (no test can tell it apart) or what else was found.
    # Written by hand in results/<target>.json; kept across runs with the mutant (mutation/carry.py).
    note: str = ""


@dataclass
class TargetReport:
    target: str
    module: str
    functions: list[str]
    tests: list[str]
    date: str
    commit: str
    baseline_s: float
    candidates: int
    sampled: int
    mutants: list[Mutant] = field(default_factory=list)
    error: str | None = None

    def count(self, *outcomes: str) -> int:
        return sum(1 for m in self.mutants if m.outcome in outcomes)

    @property
    def score(self) -> float | None:
        ran = self.count("killed", "timeout", "survived")
        return round(100 * self.count("killed", "timeout") / ran, 1) if ran else None


def load_targets(path: Path) -> list[Target]:
    data = tomllib.loads(path.read_text())
    return [Target(**t) for t in data["target"]]


def function_ranges(module: Path, names: list[str]) -> dict[str, tuple[int, int]]:
    """name -> (first line, last line) of each listed function; an unknown name is an error."""
    tree = ast.parse(module.read_text())
    found: dict[str, tuple[int, int]] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                qualified = prefix + child.name
                if qualified in names and not isinstance(child, ast.ClassDef):
                    first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                    found[qualified] = (first, child.end_lineno or child.lineno)
                if isinstance(child, ast.ClassDef):
                    visit(child, qualified + ".")

    visit(tree, "")
    missing = sorted(set(names) - set(found))
    if missing:
        raise SystemExit(f"{module}: no function {', '.join(missing)} (mutation/targets.toml is out of date)")
    return found


def annotation_spans(module: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the type annotations are: with postponed evaluation a mutant there changes nothing."""
    spans = []
    for node in ast.walk(ast.parse(module.read_text())):
        notes: list[ast.expr | None] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            notes.append(node.returns)
        elif isinstance(node, ast.arg | ast.AnnAssign):
            notes.append(node.annotation)
        for note in (n for n in notes if n is not None):
            spans.append(((note.lineno, note.col_offset), (note.end_lineno or note.lineno, note.end_col_offset or 0)))
    return spans


def _kept(operator: str) -> bool:
    for family, partners in (("ReplaceBinaryOperator_", BINARY_PARTNERS),
                             ("ReplaceComparisonOperator_", COMPARISON_PARTNERS)):
        if family in operator:
            old, new = operator.split(family, 1)[1].split("_")
            return new in partners.get(old, set())
    return "RemoveDecorator" not in operator  # only @property and @dataclass here: types, not logic


def candidates(module: Path, ranges: dict[str, tuple[int, int]]) -> list[Mutant]:
    tree = get_ast_from_path(module)
    annotations = annotation_spans(module)
    found: list[Mutant] = []
    for name in cosmic_ray.plugins.operator_names():
        operator_class = cosmic_ray.plugins.get_operator(name)
        if not _kept(name) or operator_class.arguments():  # VariableReplacer and -Inserter need a variable
            continue
        operator = operator_class()
        positions = (pos for node in ast_nodes(tree) for pos in operator.mutation_positions(node))
        for occurrence, (start, _end) in enumerate(positions):
            function = next((f for f, (a, b) in ranges.items() if a <= start[0] <= b), None)
            if function is not None and not any(a <= start < b for a, b in annotations):
                found.append(Mutant(name, occurrence, start[0], function))
    return sorted(found, key=lambda m: (m.line, m.operator, m.occurrence))


def sample(target: Target, found: list[Mutant]) -> list[Mutant]:
    if len(found) <= target.max_mutants:
        return found
    chosen = random.Random(target.name).sample(found, target.max_mutants)  # the same sample every run
    return sorted(chosen, key=lambda m: (m.line, m.operator, m.occurrence))


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "src", "tests")
    return git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")


def scratch_copy() -> Path:
    work = Path(tempfile.mkdtemp(prefix="pgshift-mutation-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")
    for part in ("src", "tests", "docs", "bench"):  # tests read docs/ and bench/ too
        shutil.copytree(ROOT / part, work / part, ignore=ignore)
    for name in ("pyproject.toml", "Makefile", "README.md"):
        shutil.copy2(ROOT / name, work / name)
    return work


def test_command(target: Target) -> str:
    import shlex

    return shlex.join([sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider",
                       *target.tests])


def candidate_diffs(module: Path, chosen: list[Mutant]) -> list[tuple[str, str, str]]:
    """Each chosen mutant's (operator, function, diff), computed without running anything."""
    import difflib

    from cosmic_ray.mutating import mutate_code

    code = module.read_text()
    found = []
    for m in chosen:
        mutated = mutate_code(code, cosmic_ray.plugins.get_operator(m.operator)(), m.occurrence) or code
        diff = "\n".join(difflib.unified_diff(code.splitlines(), mutated.splitlines(), "a", "b", lineterm=""))
        found.append((m.operator, m.function, diff))
    return found


def previous_outcomes(target: Target, module: Path, chosen: list[Mutant]) -> list[dict[str, Any] | None] | None:
    """For each chosen mutant, the last run's result of the same mutant (same operator, function, change and
    surrounding lines, wherever they now are: an edit elsewhere in the module moves lines and occurrences;
    see mutation/carry.py)."""
    path = RESULTS / f"{target.name}.json"
    if not path.exists():
        return None
    found = carried(json.loads(path.read_text())["mutants"], candidate_diffs(module, chosen))
    return found if any(found) else None


def run_target(target: Target, work: Path, deadline: float, commit: str, survivors_only: bool = False,
               resume: bool = False) -> TargetReport:
    module = work / target.module
    ranges = function_ranges(module, target.functions)
    found = candidates(module, ranges)
    chosen = sample(target, found)
    previous = previous_outcomes(target, module, chosen) if survivors_only or resume else None
    if (survivors_only or resume) and previous is None:
        print(f"{target.name}: no earlier run of these same mutants; running them all")
    # --survivors: the earlier survivors, timeouts (a timeout may be a slow pass) and mutants not run are run
    # again; --resume: only the mutants not run (and those the code did not have last time).
    again = ("survived", "not run", "timeout") if survivors_only else ("not run",)
    for mutant, old in zip(chosen, previous or [None] * len(chosen), strict=True):
        if old:
            mutant.note = old.get("note", "")
        if old and old["outcome"] not in again:
            mutant.outcome, mutant.seconds, mutant.diff = old["outcome"], old["seconds"], old["diff"]
    command = test_command(target)
    started = time.monotonic()
    baseline = subprocess.run(command, shell=True, cwd=work, capture_output=True, text=True)
    baseline_s = round(time.monotonic() - started, 1)
    report = TargetReport(target.name, target.module, target.functions, target.tests,
                          datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), commit, baseline_s, len(found), len(chosen))
    if baseline.returncode != 0:  # nothing to learn from mutants; the other targets still run
        print(f"{target.name}: SKIPPED, the mapped tests fail without any mutation:\n{baseline.stdout[-3000:]}")
        report.error = "the mapped tests fail without any mutation"
        if not (RESULTS / f"{target.name}.json").exists():  # an earlier run's results are kept, not emptied
            write(report)
        return report
    # Loose: on a shared, loaded machine a mutant's passing run took 4x the baseline, and a timeout
    # counts as killed, so a tight limit would hide survivors.
    timeout = max(60.0, 5 * baseline_s + 30)
    to_run = sum(1 for m in chosen if m.outcome == "not run")
    print(f"{target.name}: {to_run} of {len(found)} mutants to run, tests {baseline_s}s each "
          f"(at most {to_run * baseline_s / 60:.0f} min)", flush=True)
    report.mutants = chosen  # all of them from the start: a run stopped part-way lists the rest as "not run"
    for n, mutant in enumerate(chosen, start=1):
        if mutant.outcome != "not run" or time.monotonic() > deadline:
            continue  # kept from the earlier run, or left "not run"
        spec = MutationSpec(module_path=module, operator_name=mutant.operator, occurrence=mutant.occurrence,
                            start_pos=(mutant.line, 0), end_pos=(mutant.line, 1))
        began = time.monotonic()
        STOP.in_mutant = True
        try:
            result = mutate_and_test([spec], command, timeout)
        finally:
            STOP.in_mutant = False
        if STOP.requested:  # its tests were ended by the stop, not by the mutant: no result, still "not run"
            write(report)
            raise SystemExit(130)
        mutant.seconds = round(time.monotonic() - began, 1)
        mutant.diff = (result.diff or "").replace(f"{work}/", "")
        if result.worker_outcome == WorkerOutcome.NO_TEST:
            mutant.outcome = "no-mutation"
        elif result.test_outcome == TestOutcome.SURVIVED:
            mutant.outcome = "survived"
        elif result.test_outcome == TestOutcome.KILLED:
            mutant.outcome = "timeout" if result.output == "timeout" else "killed"
        else:
            mutant.outcome = "incompetent"
        print(f"  [{n}/{len(chosen)}] {mutant.outcome:9} line {mutant.line} {mutant.operator} ({mutant.seconds}s)",
              flush=True)
        write(report)
    write(report)
    return report


class Stop:
    """A SIGTERM or ^C asked the run to stop; ``in_mutant`` while a mutant's tests run."""

    requested = False
    in_mutant = False


STOP = Stop()


def _end_running_tests() -> bool:
    """Kill the mutant's test run, if one is running: cosmic-ray starts it in a session of its own (out of
    reach of ^C), so it is the child of this process that leads its own process group. Linux's /proc."""
    ended = False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
            parent, group = (int(field) for field in rest.rsplit(") ", 1)[1].split()[1:3])
            if parent == os.getpid() and group == int(pid):
                os.killpg(group, signal.SIGKILL)
                ended = True
        except (OSError, ValueError):
            continue  # a process that ended meanwhile
    return ended


def stop(_signum: int, _frame: object) -> None:
    """Stop the run. A mutant whose tests were running counts as not run: its tests fail because they were
    killed, which must not read as the mutant killed (the loop throws the result away and exits)."""
    STOP.requested = True
    if not (STOP.in_mutant and _end_running_tests()):
        sys.exit(130)


def write(report: TargetReport) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {**asdict(report), "score": report.score,
            "counts": {k: report.count(k) for k in ("killed", "timeout", "survived", "incompetent",
                                                     "no-mutation", "not run")}}
    path = RESULTS / f"{report.target}.json"
    part = path.with_suffix(".json.part")  # replaced in one step: a stop while writing leaves the last file whole
    part.write_text(json.dumps(data, indent=1) + "\n")
    part.replace(path)


def summary_line(r: TargetReport) -> str:
    ran = r.count("killed", "timeout", "survived")
    return (f"| {r.target} | {r.candidates} | {ran} | {r.count('killed', 'timeout')} | {r.count('survived')} | "
            f"{'' if r.score is None else f'{r.score}%'} | {r.count('not run')} |")


def markdown_report(targets: list[Target]) -> str:
    """The results table and each survivor's one-line change, from mutation/results/*.json."""
    rows = ["| target | date (commit) | mutants (run) | killed | survived | score | not run |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    survivors: list[str] = []
    for target in targets:
        path = RESULTS / f"{target.name}.json"
        if not path.exists():
            rows.append(f"| {target.name} | not run yet | | | | | |")
            continue
        data = json.loads(path.read_text())
        counts = data["counts"]
        ran = counts["killed"] + counts["timeout"] + counts["survived"]
        score = "" if data["score"] is None else f"{data['score']}%"
        rows.append(f"| {target.name} | {data['date']} ({data['commit']}) | {data['candidates']} ({ran}) | "
                    f"{counts['killed'] + counts['timeout']} | {counts['survived']} | {score} | {counts['not run']} |")
        for m in (m for m in data["mutants"] if m["outcome"] == "survived"):
            change = [line[1:].strip() for line in m["diff"].splitlines()
                      if line[:1] in "+-" and not line.startswith(("---", "+++"))]
            note = f": {m['note']}" if m.get("note") else ""
            survivors.append(f"- {target.name}, `{data['module']}:{m['line']}` ({m['function']}): "
                             f"`{change[0] if change else ''}` -> `{change[1] if len(change) > 1 else '(removed)'}`"
                             f"{note}")
    return "\n".join([*rows, "", *survivors])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="target names (default: all)")
    parser.add_argument("--list", action="store_true", help="count the mutants per target; run nothing")
    parser.add_argument("--minutes", type=float, default=60.0, help="stop starting new mutants after this")
    parser.add_argument("--report", action="store_true",
                        help="print the last results as markdown (for docs/testing.md); run nothing")
    parser.add_argument("--survivors", action="store_true",
                        help="run again only the mutants that survived, timed out or did not run last time")
    parser.add_argument("--resume", action="store_true",
                        help="run only the mutants the last run left not run (it was cut short by --minutes)")
    parser.add_argument("--config", type=Path, default=ROOT / "mutation" / "targets.toml")
    args = parser.parse_args()
    targets = load_targets(args.config)
    unknown = set(args.targets) - {t.name for t in targets}
    if unknown:
        parser.error(f"unknown target(s) {', '.join(sorted(unknown))}; see {args.config}")
    targets = [t for t in targets if not args.targets or t.name in args.targets]
    if args.report:
        print(markdown_report(targets))
        return 0
    if args.list:
        for t in targets:
            found = candidates(ROOT / t.module, function_ranges(ROOT / t.module, t.functions))
            print(f"{t.name}: {len(found)} mutants, {min(len(found), t.max_mutants)} run")
        return 0

    from pgshift.embedded import EmbeddedCluster

    # A background job of a non-interactive shell ignores SIGINT: let SIGTERM (and ^C) stop the run
    # through the cleanup below, so no mutated copy, test run or cluster is left behind.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    deadline = time.monotonic() + args.minutes * 60
    commit = git_commit()
    work = scratch_copy()
    cluster = EmbeddedCluster(work / "cluster")
    os.environ.update(PGSHIFT_TEST_CLUSTER=str(cluster.root), PYTHONPATH=f"{work / 'src'}{os.pathsep}{work}",
                      PYTHONDONTWRITEBYTECODE="1")
    os.environ.pop("PGSHIFT_TEST_DSN", None)
    os.chdir(work)  # cosmic-ray runs the test command in the current folder
    reports = []
    try:
        cluster.start(tcp=True)
        for target in targets:
            reports.append(run_target(target, work, deadline, commit, args.survivors, args.resume))
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
    print("\n| target | mutants | run | killed | survived | score | not run |\n|---|---|---|---|---|---|---|")
    for r in reports:
        print(summary_line(r))
    for r in reports:
        for m in (m for m in r.mutants if m.outcome == "survived"):
            print(f"\nSURVIVED {r.target} {r.module}:{m.line} ({m.function}) {m.operator}\n{m.diff}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
