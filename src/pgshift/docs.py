"""Regenerate every generated document: ``python -m pgshift.docs [--check] [DOCS_DIR]`` (``make docs``).

Writes into DOCS_DIR (default ``docs``):

- ``rules/PS*.md`` from the lint rules' metadata (:mod:`pgshift.lint.docs`),
- ``exit-codes.md`` from the error classes (:mod:`pgshift.exit_codes`),
- ``ops.schema.json`` from the operations-file model (:func:`pgshift.ops.model.json_schema`),
- ``operations.md`` from the operations' dataclasses (:mod:`pgshift.ops.reference`).

``--check`` writes nothing and exits 1, naming each file that is missing, differs, or is a rule
page no rule produces any more.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pgshift import exit_codes
from pgshift.lint.docs import render_all
from pgshift.ops import reference
from pgshift.ops.model import json_schema

RULES = "rules"


def generated() -> dict[str, str]:
    """Path under the docs folder -> the text it must hold."""
    files = {f"{RULES}/{name}": text for name, text in render_all().items()}
    files["exit-codes.md"] = exit_codes.render()
    files["ops.schema.json"] = json.dumps(json_schema(), indent=2) + "\n"
    files["operations.md"] = reference.render()
    return files


def _extra_rule_pages(docs: Path, files: dict[str, str]) -> list[str]:
    folder = docs / RULES
    return sorted(f"{RULES}/{p.name}" for p in folder.glob("*.md") if f"{RULES}/{p.name}" not in files) \
        if folder.is_dir() else []


def out_of_date(docs: Path) -> list[str]:
    """The generated files under ``docs`` that are missing, differ, or should not be there."""
    files = generated()
    stale = [name for name, text in files.items()
             if not (docs / name).is_file() or (docs / name).read_text() != text]
    return sorted(stale) + _extra_rule_pages(docs, files)


def write(docs: Path) -> list[str]:
    """Write every generated file under ``docs``; returns those that changed (or were removed)."""
    files = generated()
    changed = out_of_date(docs)
    for name in _extra_rule_pages(docs, files):
        (docs / name).unlink()
    for name, text in files.items():
        target = docs / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_text() != text:
            target.write_text(text)
    return changed


def main(argv: list[str]) -> int:
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    docs = Path(args[0]) if args else Path("docs")
    if check:
        stale = out_of_date(docs)
        for name in stale:
            print(f"{docs / name} is out of date; run `make docs` (python -m pgshift.docs)", file=sys.stderr)
        return 1 if stale else 0
    changed = write(docs)
    print(f"{len(generated())} generated files in {docs}: " + (", ".join(changed) if changed else "all up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
