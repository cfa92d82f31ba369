"""Render docs/exit-codes.md from the exception classes (`python -m pgshift.exit_codes`)."""

from __future__ import annotations

from pathlib import Path

from pgshift import errors


def render() -> str:
    classes = {
        cls.exit_code: cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.PgshiftError) and cls is not errors.PgshiftError
    }
    lines = [
        "# Exit codes",
        "",
        "Every failure a user can cause has its own exit code and a stable error code (printed as",
        "`error (<code>): ...`, and as `{\"error\": {\"code\": ...}}` with `--json`). Generated from",
        "`src/pgshift/errors.py` by `python -m pgshift.exit_codes`; do not edit by hand.",
        "",
        "| exit | error code | exception | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for code in sorted(errors.EXIT_CODES):
        cls = classes.get(code)
        name = f"`{cls.__name__}`" if cls else ""
        ident = f"`{cls.code}`" if cls else ""
        lines.append(f"| {code} | {ident} | {name} | {errors.EXIT_CODES[code]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    target = Path("docs/exit-codes.md")
    target.write_text(render())
    print(f"wrote {target}")
