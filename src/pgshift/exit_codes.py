"""Render docs/exit-codes.md from the exception classes (`python -m pgshift.exit_codes`)."""

from __future__ import annotations

from pathlib import Path

from pgshift import errors


def render() -> str:
    rows = [(code, "", "", meaning) for code, meaning in errors.EXIT_CODES.items()]
    rows += [(cls.exit_code, f"`{cls.code}`", f"`{cls.__name__}`", (cls.__doc__ or "").strip().split("\n")[0])
             for cls in errors.registered()]
    lines = [
        "# Exit codes",
        "",
        "Every failure a user can cause has its own exit code and a stable error code (printed as",
        "`error (<code>): ...`, and as `{\"error\": {\"code\": ...}}` on stderr with `--json` or lint's",
        "`-o json`). Generated from the error classes (`src/pgshift/errors.py` and the modules defining their",
        "own) by `python -m pgshift.exit_codes`; do not edit by hand.",
        "",
        "| exit | error code | exception | meaning |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {exit_code} | {ident} | {name} | {meaning} |" for exit_code, ident, name, meaning in sorted(rows)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    target = Path("docs/exit-codes.md")
    target.write_text(render())
    print(f"wrote {target}")
