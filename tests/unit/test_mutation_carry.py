"""mutation/carry.py: a mutant's outcome and note carry to the same mutant of the next run, never to another
mutant making the same change to an identical line (the backfill's waiters' halving took the note of the
lock-limit cut)."""

from __future__ import annotations

import difflib
import importlib.util
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("mutation_carry", ROOT / "mutation" / "carry.py")
assert _spec is not None and _spec.loader is not None
carry: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(carry)

CUT = """\
def loop(opts, size):
    while True:
        if cut:
            notify("reached the lock limit; rolled back, trying half as many")
            size = max(opts.min_batch, size // 2)
            continue
        if size <= opts.min_batch:
            raise Stop()
"""
# The same function after the waiters' halving was added below the cut: the same line, other surroundings.
BOTH = CUT + """\
        if waiters:
            calm = opts.calm_batches
            if waited_ms >= opts.target_ms / 2:
                size = max(opts.min_batch, size // 2)
            else:
                size = min(size, grow(size))
        record(size)
"""
HALVING = "size = max(opts.min_batch, size // 2)"


def _diff(code: str, nth: int, old: str = HALVING, new: str = "size = max(opts.min_batch, size // 3)") -> str:
    """The unified diff (three lines of context) of ``old`` replaced by ``new`` at its ``nth`` occurrence."""
    lines = code.splitlines()
    at = [i for i, line in enumerate(lines) if line.strip() == old][nth]
    mutated = [*lines[:at], lines[at].replace(old, new), *lines[at + 1:]]
    body = "\n".join(difflib.unified_diff(lines, mutated, "a/m.py", "b/m.py", lineterm=""))
    return "--- mutation diff ---\n" + body


def _result(diff: str, note: str, line: int = 5) -> dict[str, Any]:
    return {"operator": "core/NumberReplacer", "function": "loop", "line": line, "outcome": "survived",
            "diff": diff, "note": note}


def _new(*diffs: str) -> list[tuple[str, str, str]]:
    return [("core/NumberReplacer", "loop", d) for d in diffs]


def test_the_same_change_to_an_identical_line_elsewhere_does_not_take_the_note() -> None:
    cut = _result(_diff(CUT, 0), "killed since by the lock-limit test")
    # This run sampled only the waiters' halving: the change is the cut's, the mutant is not.
    assert carry.carried([cut], _new(_diff(BOTH, 1))) == [None]
    # Both sampled, the halving listed first: the note stays with the cut.
    assert carry.carried([cut], _new(_diff(BOTH, 1), _diff(BOTH, 0))) == [None, cut]


def test_a_mutant_is_found_again_after_edits_elsewhere_and_next_to_it() -> None:
    cut = _result(_diff(CUT, 0), "equivalent: ...")
    moved = "import os\n\n\n" + CUT  # lines moved by an edit elsewhere in the module
    assert carry.carried([cut], _new(_diff(moved, 0))) == [cut]
    edited = CUT.replace('notify("reached', 'say("reached')  # one line next to it edited
    assert carry.carried([cut], _new(_diff(edited, 0))) == [cut]
    rewritten = CUT.replace("        if cut:\n", "        if limit_hit(t0):\n").replace("notify(", "log(").replace(
        "if size <=", "if size <").replace("raise Stop()", "raise Stop(size)").replace("continue", "pass")
    assert carry.carried([cut], _new(_diff(rewritten, 0))) == [None]  # its surroundings rewritten: run again


def test_identical_sites_keep_their_own_results_and_a_tie_is_not_guessed() -> None:
    twice = CUT + CUT.replace("def loop", "def loop2")
    first, second = _result(_diff(twice, 0), "first", 5), _result(_diff(twice, 1), "second", 13)
    assert carry.carried([first, second], _new(_diff(twice, 0), _diff(twice, 1))) == [first, second]
    # One earlier mutant, two now, each with one line next to it edited: as alike to either, so neither.
    one = _result(_diff(CUT, 0), "which?")
    edited = CUT.replace("continue", "pass") + CUT.replace("notify(", "say(")
    assert carry.carried([one], _new(_diff(edited, 0), _diff(edited, 1))) == [None, None]


def test_every_stored_result_is_found_as_itself() -> None:
    """The stored results (their diffs refreshed to their run's code where kept from an older run) give
    every mutant a key of its own, or at least the stored order for identical ones: each note stays put."""
    for path in sorted((ROOT / "mutation" / "results").glob("*.json")):
        mutants = [m for m in json.loads(path.read_text())["mutants"] if m["diff"]]
        found = carry.carried(mutants, [(m["operator"], m["function"], m["diff"]) for m in mutants])
        assert all(f is m for f, m in zip(found, mutants, strict=True)), path.name
