"""Benchmark: `pgshift lint --fix` on a large native file with two fixable statements at its end (a
CREATE INDEX moved to a no-transaction migration, a DROP INDEX), its peak RSS, and that an older
pgshift (--before SRC) writes the same bytes.

    .venv/bin/python bench/large_files/fix.py [--sizes 10,50] [--before /path/to/old/src]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gen  # noqa: E402  (a script folder, not a package)
import run  # noqa: E402

TAIL = "CREATE INDEX seed_amount ON seed_customers (amount);\nDROP INDEX old_idx;\n"


def fix(size: float, src: str | None) -> tuple[run.Run, dict[str, bytes]]:
    folder = Path(tempfile.mkdtemp(prefix="pgshift-bench-fix-")) / "migrations"
    folder.mkdir()
    try:
        up = gen.body(int(size * 1_000_000)) + TAIL
        (folder / "20240101000000_seed.sql").write_text(f"-- pgshift:up\n{up}-- pgshift:down\n{gen.DOWN}")
        del up
        measured = run.measure([*run.pgshift_argv(), "lint", "--fix", "-o", "json", str(folder)],
                               env=run.pgshift_env(src))
        return measured, {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda s: [float(x) for x in s.split(",")], default=[10, 50])
    parser.add_argument("--before", default=None, help="an older pgshift's src/ folder to compare with")
    args = parser.parse_args()
    print("| size | pgshift | `lint --fix` | same bytes as before |\n|---:|---|---|---|")
    for size in args.sizes:
        after, written = fix(size, None)
        print(f"| {size:g} MB | this | {after.cpu_seconds} CPU s, {after.peak_mb:.0f} MB | |")
        if args.before:
            before, old = fix(size, args.before)
            print(f"| {size:g} MB | before | {before.cpu_seconds} CPU s, {before.peak_mb:.0f} MB "
                  f"| {'yes' if old == written else 'NO'} |")


if __name__ == "__main__":
    main()
