"""`make docs` (python -m pgshift.docs) regenerates every generated document, and the committed
ones are what it produces."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from pgshift.docs import generated, main

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_generator_into_an_empty_folder_writes_exactly_the_committed_files(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(generated())
    stale = [name for name in written
             if not (DOCS / name).exists() or (tmp_path / name).read_bytes() != (DOCS / name).read_bytes()]
    assert stale == [], "run: make docs"


def test_the_committed_docs_are_up_to_date() -> None:
    assert main(["--check", str(DOCS)]) == 0, "run: make docs"


def test_check_names_an_edited_a_missing_and_a_left_over_file(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    (docs / "exit-codes.md").write_text("edited by hand\n")
    (docs / "ops.schema.json").unlink()
    (docs / "rules" / "PS998.md").write_text("a rule that no longer exists\n")
    done = subprocess.run([sys.executable, "-m", "pgshift.docs", "--check", str(docs)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1
    for name in ("exit-codes.md", "ops.schema.json", "rules/PS998.md"):
        assert f"{docs / name} is out of date" in done.stderr
    assert main([str(docs)]) == 0  # and writing repairs all three
    assert not (docs / "rules" / "PS998.md").exists()
    assert main(["--check", str(docs)]) == 0


def test_every_generated_kind_is_covered() -> None:
    names = generated()
    assert {"exit-codes.md", "ops.schema.json", "operations.md"} <= set(names)
    assert sum(1 for n in names if n.startswith("rules/PS")) >= 46
