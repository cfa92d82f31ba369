"""Which mutant of an earlier run a mutant of this run is: its outcome and hand-written note carry over.

A mutant is known by its operator, function and change (the line it removes and the one it adds), and
by the unchanged lines around it in its diff. The change alone is not enough: a function may hold the
same line twice (``size = max(opts.min_batch, size // 2)`` for the lock-limit cut and for the waiters'
halving), and a note written for one mutant was carried to the other. Line numbers are no key either: an
edit elsewhere in the module moves them. Without cosmic-ray, so the unit tests can import it.
"""

from __future__ import annotations

from difflib import SequenceMatcher
from typing import Any

# (operator, function, change): what the mutant does, wherever it now is.
ChangeKey = tuple[str, str, tuple[str, ...]]


def _body(diff: str) -> list[str]:
    """The hunk's lines, without the file headers and the @@ line."""
    return [line for line in diff.splitlines()
            if not line.startswith(("---", "+++", "@@")) and line[:1] in ("+", "-", " ")]


def change_of(diff: str) -> tuple[str, ...]:
    """A mutant's change as its removed and added lines, without their position."""
    return tuple(line[1:].strip() for line in _body(diff) if line[:1] in "+-")


def context_of(diff: str) -> tuple[str, ...]:
    """The unchanged lines around the change (a unified diff's three each side), stripped of indentation."""
    return tuple(line[1:].strip() for line in _body(diff) if line[:1] == " ")


def _likeness(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


def carried(old: list[dict[str, Any]], new: list[tuple[str, str, str]]) -> list[dict[str, Any] | None]:
    """For each mutant of ``new`` ((operator, function, diff)), the mutant of the earlier run's results
    ``old`` that is the same one, or None (a new mutant: no note, run again).

    The same change in the same surroundings is the same mutant. One whose surroundings were edited is the
    earlier mutant of the same change whose surroundings are at least half alike, and more alike than any
    other's; it is not guessed otherwise, even when the change occurs once in each run: the waiters' halving
    is the same line as the lock-limit cut's, in other surroundings, and took its note."""
    earlier = [((m["operator"], m["function"], change_of(m["diff"])), context_of(m["diff"]), m)
               for m in old if m.get("diff")]
    wanted = [((operator, function, change_of(diff)), context_of(diff)) for operator, function, diff in new]
    found: list[dict[str, Any] | None] = [None] * len(new)
    exact: dict[tuple[ChangeKey, tuple[str, ...]], list[int]] = {}
    for j, (key, context, _m) in enumerate(earlier):
        exact.setdefault((key, context), []).append(j)
    taken: set[int] = set()
    for i, (key, context) in enumerate(wanted):
        same = exact.get((key, context))
        if same:
            j = same.pop(0)
            found[i] = earlier[j][2]
            taken.add(j)
    left_old: dict[ChangeKey, list[int]] = {}
    for j, (key, _context, _m) in enumerate(earlier):
        if j not in taken:
            left_old.setdefault(key, []).append(j)
    left_new: dict[ChangeKey, list[int]] = {}
    for i, (key, _context) in enumerate(wanted):
        if found[i] is None:
            left_new.setdefault(key, []).append(i)
    for key, indices in left_new.items():
        olds = left_old.get(key, [])
        pairs = sorted(((_likeness(earlier[j][1], wanted[i][1]), i, j) for i in indices for j in olds), reverse=True)
        used_new: set[int] = set()
        used_old: set[int] = set()
        for n, (score, i, j) in enumerate(pairs):
            if score < 0.5 or i in used_new or j in used_old:
                continue
            rivals = [p for p in pairs[:n] + pairs[n + 1:] if p[0] == score and (p[1] == i or p[2] == j)
                      and p[1] not in used_new and p[2] not in used_old]
            if rivals:
                continue  # as alike to another: not guessed
            found[i] = earlier[j][2]
            used_new.add(i)
            used_old.add(j)
    return found
