"""bench/compare_revisions.py: both revisions really run, the same code twice is refused, the base's
worktree goes away whatever happens, and the verdict follows the noise rule. The comparisons run a
throwaway git repository whose ``pgshift`` is a two-line package and whose bench is a stub that
reports which pgshift it (and a ``python -m pgshift`` it starts) imported: seconds, no PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.bench.loader import BENCH, load_bench

compare_revisions = load_bench("compare_revisions.py", "pgshift_bench_compare_revisions")

STUB_BENCH = '''\
import json, os, subprocess, sys
args = sys.argv[1:]
mode = args[args.index("--mode") + 1]
if mode == "shadow":  # imports another tree's pgshift, whatever the side
    sys.path.insert(0, args[args.index("--shadow") + 1])
import pgshift
env = dict(os.environ)
if mode == "clean-cli":  # starts the CLI without the run's PYTHONPATH
    env.pop("PYTHONPATH")
cli = subprocess.run([sys.executable, "-m", "pgshift"], env=env, capture_output=True, text=True)
with open(args[args.index("--json") + 1], "w") as out:
    json.dump({"speed": pgshift.SPEED, "cli": cli.stdout.strip()}, out)
'''


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository whose committed pgshift has SPEED = 1 and whose working tree has SPEED = 2."""
    root = tmp_path / "repo"
    (root / "src" / "pgshift").mkdir(parents=True)
    (root / "bench" / "stub").mkdir(parents=True)
    (root / "src" / "pgshift" / "__init__.py").write_text("SPEED = 1\n")
    (root / "src" / "pgshift" / "__main__.py").write_text("import pgshift\nprint(pgshift.SPEED)\n")
    (root / "bench" / "stub" / "run.py").write_text(STUB_BENCH)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "base")
    (root / "src" / "pgshift" / "__init__.py").write_text("SPEED = 2\n")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the worktree's holder goes
    return root


def stub(repo: Path, mode: str = "inherit", cli: bool = True) -> Any:
    def extract(data: dict[str, Any]) -> list[Any]:
        return [compare_revisions.Metric("speed", data["speed"], "higher", counted=True),
                compare_revisions.Metric("speed seen by the CLI", int(data["cli"]), "higher", counted=True)]

    return compare_revisions.BenchSpec("stub", repo / "bench" / "stub" / "run.py",
                                       ["--mode", mode, "--shadow", str(repo / "src")], extract, cli=cli)


def run(repo: Path, mode: str = "inherit", repeat: int = 1, cli: bool = True) -> int:
    code: int = compare_revisions.compare([stub(repo, mode, cli)], root=repo, base_rev="HEAD", repeat=repeat,
                                          full=False, results=repo.parent / "results")
    return code


def assert_cleaned_up(repo: Path) -> None:
    assert git(repo, "worktree", "list").count("\n") == 1, "the base's worktree is still registered"
    assert list((repo.parent / "tmp").iterdir()) == [], "the base's checkout is still on disk"


def test_the_base_and_the_working_tree_each_run_their_own_code_in_the_bench_and_its_cli(repo: Path) -> None:
    assert run(repo, repeat=2) == 0
    [report] = (repo.parent / "results").glob("compare-*.json")
    rows = {row["metric"]: row for row in json.loads(report.read_text())["benches"]["stub"]}
    for metric in ("speed", "speed seen by the CLI"):
        assert (rows[metric]["base"], rows[metric]["candidate"]) == ([1, 1], [2, 2])
        assert rows[metric]["verdict"] == "faster"
    assert_cleaned_up(repo)


def test_the_same_code_on_both_sides_is_refused_before_any_run(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    git(repo, "checkout", "--", "src")  # the working tree is the base again
    with pytest.raises(compare_revisions.Refused, match="would run the same code twice"):
        run(repo)
    assert "[stub" not in capsys.readouterr().out
    assert_cleaned_up(repo)


def test_a_bench_importing_the_candidates_pgshift_on_the_base_side_is_refused(repo: Path) -> None:
    with pytest.raises(compare_revisions.Refused, match=r"stub, base: process .* imported pgshift from .*repo/src"):
        run(repo, "shadow")
    assert_cleaned_up(repo)


def test_a_cli_started_without_the_runs_pythonpath_is_refused(repo: Path) -> None:
    with pytest.raises(compare_revisions.Refused, match="started without this run's PYTHONPATH"):
        run(repo, "clean-cli")
    assert_cleaned_up(repo)


def test_a_failing_bench_exits_1_and_an_interrupt_still_removes_the_worktree(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "bench" / "stub" / "run.py").write_text("import pgshift\nraise SystemExit(4)\n")
    assert run(repo) == compare_revisions.EXIT_FAILED
    assert_cleaned_up(repo)
    (repo / "bench" / "stub" / "run.py").write_text("import sys\n")
    with pytest.raises(compare_revisions.Refused, match="no process of the run imported pgshift"):
        run(repo, cli=False)  # it succeeded without measuring anything of either side

    def interrupted(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(compare_revisions, "run_once", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(repo)
    assert_cleaned_up(repo)


@pytest.mark.parametrize(("base", "cand", "expected"), [
    ([1.0, 1.2, 1.1], [1.15, 1.3, 1.25], "same within noise"),  # the runs overlap
    ([1.0, 1.05, 1.1], [1.2, 1.3, 1.25], "slower"),  # apart, medians 19% apart
    ([1.0, 1.01, 1.02], [1.03, 1.04, 1.05], "same within noise"),  # apart but within 3%
    ([1.0, 1.05, 1.1], [0.5, 0.6, 0.55], "faster"),
    ([1.0], [2.0], "no verdict (under 3 runs)"),
])
def test_a_timed_figure_differs_only_when_the_runs_do_not_overlap_by_more_than_the_floor(
        base: list[float], cand: list[float], expected: str) -> None:
    assert compare_revisions.verdict(base, cand) == expected


def test_higher_is_better_figures_and_counted_figures() -> None:
    assert compare_revisions.verdict([100.0, 101, 102], [80.0, 81, 82], better="higher") == "slower"
    assert compare_revisions.verdict([0.0], [1.0], counted=True, words=("more", "fewer")) == "more"
    assert compare_revisions.verdict([61.0] * 3, [61.0] * 3, counted=True) == "same"
    assert compare_revisions.verdict([], [1.0]) == "no figures"


def test_arguments_and_every_compared_bench_writes_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert compare_revisions.parse_args([]).only == list(compare_revisions.DEFAULT_BENCHES)
    assert compare_revisions.parse_args(["--only", "lint, backfill"]).only == ["lint", "backfill"]
    for wrong in (["--only", "large_files"], ["--repeat", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            compare_revisions.parse_args(wrong)
        assert exit_info.value.code == compare_revisions.EXIT_USAGE
    assert "no comparable bench named large_files" in capsys.readouterr().err
    quick = compare_revisions.quick_arguments()
    for name in compare_revisions.DEFAULT_BENCHES:
        source = (BENCH / name / "run.py").read_text()
        assert name in quick and '"--json"' in source, f"bench/{name}/run.py must take --json for the comparison"
        extra = compare_revisions.PGSHIFT_ONLY.get(name, [])
        unknown = [a for a in extra if a.startswith("--") and f'"{a}"' not in source]
        assert unknown == [], f"bench/{name}/run.py does not accept {unknown}"


def test_the_default_base_is_the_merge_base_with_main_or_the_commit_before(repo: Path) -> None:
    git(repo, "checkout", "-q", "-B", "main")  # whatever git init named the first branch
    assert compare_revisions.default_base(repo) == "HEAD~1"  # main itself: nothing of its own
    fork = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "-b", "feature")
    git(repo, "commit", "-q", "-am", "feature")
    git(repo, "commit", "-q", "--allow-empty", "-m", "more")
    assert compare_revisions.default_base(repo) == fork
