"""Every file, module and tool a Makefile target names exists, and `make bench` covers every bench."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from tests.bench.loader import load_bench

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = "$(BIN)/"


def recipes(makefile: Path) -> dict[str, list[str]]:
    """target -> its recipe lines (tab-indented lines after ``target:``)."""
    found: dict[str, list[str]] = {}
    current: str | None = None
    for line in makefile.read_text().splitlines():
        if line.startswith("\t") and current is not None:
            found[current].append(line.strip())
        elif match := re.match(r"^([A-Za-z_$()./-]+)\s*:(?!=)", line):
            current = match.group(1)
            found[current] = []
        elif line.strip() and not line.startswith("#"):
            current = None
    return found


def missing_names(makefile: Path, bin_dir: Path) -> list[str]:
    """What the recipes name that does not exist: repository files, ``-m`` modules, venv tools."""
    problems = []
    for target, lines in recipes(makefile).items():
        for line in lines:
            for word in line.split():
                if word.startswith(VENV_BIN):
                    tool = word[len(VENV_BIN):]
                    if not (bin_dir / tool).exists():
                        problems.append(f"make {target}: {word} ({bin_dir / tool} does not exist)")
                elif (re.fullmatch(r"[\w.-]+(/[\w.-]+)+\.(py|toml|cfg|txt|json|md)", word)
                      and not (makefile.parent / word).exists()):
                    problems.append(f"make {target}: {word} does not exist")
            for module in re.findall(r"-m\s+([\w.]+)", line):
                if module != "pip" and importlib.util.find_spec(module) is None:
                    problems.append(f"make {target}: python -m {module}: no such module")
    return problems


def test_every_file_module_and_tool_the_makefile_names_exists() -> None:
    assert missing_names(ROOT / "Makefile", Path(sys.executable).parent) == []


def test_the_check_finds_a_missing_script_module_and_tool(tmp_path: Path) -> None:
    makefile = tmp_path / "Makefile"
    makefile.write_text("bench: $(STAMP)\n\t$(BIN)/python bench/nowhere.py\n"
                        "docs:\n\t$(BIN)/python -m pgshift.no_such_docs\n\t$(BIN)/no-such-tool --x\n")
    assert missing_names(makefile, Path(sys.executable).parent) == [
        "make bench: bench/nowhere.py does not exist",
        "make docs: python -m pgshift.no_such_docs: no such module",
        f"make docs: $(BIN)/no-such-tool ({Path(sys.executable).parent / 'no-such-tool'} does not exist)",
    ]


def test_make_bench_runs_every_bench_with_quick_arguments_it_accepts() -> None:
    run_all = load_bench("run_all.py", "pgshift_bench_run_all")
    assert run_all.benches() == sorted(run_all.QUICK), "give every bench/<name>/run.py its QUICK arguments"
    for name, arguments in run_all.QUICK.items():
        source = (ROOT / "bench" / name / "run.py").read_text()
        unknown = [a for a in arguments if a.startswith("--") and f'"{a}"' not in source]
        assert unknown == [], f"bench/{name}/run.py does not accept {unknown}"
