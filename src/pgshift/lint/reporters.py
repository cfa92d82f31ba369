"""Output formats: tty (rich), json, SARIF 2.1.0, GitHub annotations, GitLab code quality."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import TYPE_CHECKING, Any, TextIO, cast

if TYPE_CHECKING:
    from rich.console import Console

from pgshift.lint import fastjson
from pgshift.lint.gcpause import no_gc
from pgshift.lint.model import Finding, LintReport
from pgshift.lint.registry import all_rules

FORMATS = ("tty", "json", "sarif", "github", "gitlab")
DOCS_URL = "docs/rules/{id}.md"
_STYLE = {"error": "bold red", "warning": "yellow", "note": "cyan"}


def render(report: LintReport, fmt: str, console: Console | TextIO, *, show_locks: bool = False) -> None:
    """Write ``report`` in ``fmt`` to a rich console or a plain stream (the machine formats need no
    console: the CLI passes them sys.stdout and does not import rich)."""
    with no_gc():
        _render(report, fmt, console, show_locks)


def _plain(stream: TextIO) -> bool:
    """Whether rich would write ``stream`` without colours: not a terminal, and no FORCE_COLOR or
    TTY_COMPATIBLE saying otherwise (any of them, or a stream that cannot tell, is left to rich)."""
    if "FORCE_COLOR" in os.environ or "TTY_COMPATIBLE" in os.environ:
        return False
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return False


def _render(report: LintReport, fmt: str, console: Console | TextIO, show_locks: bool) -> None:
    if fmt == "tty":
        piped = cast("TextIO", console) if hasattr(console, "write") else None
        if piped is not None and _plain(piped):  # tty piped (a CI log): no rich, nor its import
            piped.write("\n".join(_tty_lines(report, True, show_locks)) + "\n")
            return
        if hasattr(console, "write"):
            from rich.console import Console

            console = Console(file=console, highlight=False, soft_wrap=True)  # type: ignore[arg-type]
        tty(report, console, show_locks=show_locks)
        return
    text = {"json": as_json, "sarif": as_sarif, "github": as_github, "gitlab": as_gitlab}[fmt](report)
    stream: TextIO = console if hasattr(console, "write") else console.file  # type: ignore[assignment]
    stream.write(text if text.endswith("\n") or not text else text + "\n")


def tty(report: LintReport, console: Console, *, show_locks: bool = False) -> None:
    """Findings grouped by file. Piped output skips rich's markup engine (plain text, linear
    and fast on tens of thousands of findings); a terminal gets colours."""
    plain = not console.is_terminal
    lines = _tty_lines(report, plain, show_locks)
    if plain:
        console.file.write("\n".join(lines) + "\n")
    else:
        console.print("\n".join(lines), markup=True, highlight=False)


def _tty_lines(report: LintReport, plain: bool, show_locks: bool) -> list[str]:
    """The tty report's lines: rich markup unless ``plain``."""
    if not plain:
        from rich.markup import escape

    def st(style: str, text: str) -> str:
        return text if plain else f"[{style}]{escape(text)}[/]"

    def esc(text: str) -> str:
        return text if plain else escape(text)

    by_file: dict[str, list[Finding]] = defaultdict(list)
    for finding in report.active:
        by_file[finding.file].append(finding)
    lines: list[str] = []
    for problem in report.parse_errors:
        lines.append(f"{st('bold red', 'parse error')} {esc(problem.file)}:{problem.line}:{problem.column}: "
                     f"{esc(problem.message)}")
    for file, findings in by_file.items():
        lines.append("\n" + st("bold underline", file))
        for f in sorted(findings, key=lambda x: (x.line, x.column)):
            lock = " " + st("dim", f"({f.lock}: blocks {', '.join(f.blocks) or 'no app traffic'})") if f.lock else ""
            lines.append(f"  {f.line}:{f.column} {st(_STYLE[f.severity], f.severity)} "
                         f"{st('bold', f.rule)} {f.name}{lock}")
            lines.append(f"    {esc(f.message)}")
            lines.append(f"    {st('dim', f.statement)}")
            if f.fix:
                lines.append(f"    {st('green', 'safe:')} " + "\n      ".join(esc(f.fix).splitlines()))
    if show_locks and report.lock_steps:
        lines.append("\n" + st("bold", "Locks held after each statement"))
        for step in report.lock_steps:
            held = ", ".join(f"{t}: {lvl}" for t, lvl in step.held.items()) or "none"
            blocked = "; ".join(f"{t} blocks {'/'.join(b)}" for t, b in step.blocked().items())
            lines.append(f"  {esc(step.file)}:{step.line} {st('dim', step.statement[:60])}\n"
                         f"    held: {held}" + (" " + st("red", f"({blocked})") if blocked else ""))
    summary = (f"\n{report.files} file(s), {report.statements} statement(s): "
               f"{st('bold red', str(report.count('error')) + ' error(s)')}, "
               f"{st('yellow', str(report.count('warning')) + ' warning(s)')}, "
               f"{st('cyan', str(report.count('note')) + ' note(s)')}")
    suppressed = sum(1 for f in report.findings if f.suppressed)
    if suppressed:
        summary += f", {suppressed} suppressed"
    if report.parse_errors:
        summary += ", " + st("bold red", f"{len(report.parse_errors)} parse error(s)")
    lines.append(summary + f" (PostgreSQL {report.pg_version})")
    return lines


def as_json(report: LintReport) -> str:
    data = report.to_json()
    if report.lock_steps:
        data["locks"] = [s.to_json() for s in report.lock_steps]
    # Indented for people; compact when the report is large (a third smaller, faster to write).
    return fastjson.dumps(data, indent=len(report.findings) < 2000)


def _level(severity: str) -> str:
    return {"error": "error", "warning": "warning", "note": "note"}[severity]


def as_sarif(report: LintReport) -> str:
    rules = [{
        "id": r.id, "name": r.name,
        "shortDescription": {"text": r.summary},
        "fullDescription": {"text": f"{r.summary} Safe alternative: {r.safe}"},
        "helpUri": DOCS_URL.format(id=r.id),
        "defaultConfiguration": {"level": _level(r.severity)},
        "properties": {"lock": r.lock, "blocks": list(r.blocks), "destructive": r.destructive},
    } for r in all_rules()]
    index = {r["id"]: i for i, r in enumerate(rules)}
    results: list[dict[str, Any]] = []
    for f in report.findings:
        result: dict[str, Any] = {
            "ruleId": f.rule, "ruleIndex": index.get(f.rule, 0), "level": _level(f.severity),
            "message": {"text": f.message + (f"\nSafe: {f.fix}" if f.fix else "")},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": f.file},
                "region": {"startLine": f.line, "startColumn": f.column},
            }}],
        }
        if f.suppressed:
            result["suppressions"] = [{"kind": "inSource", "justification": f.suppress_reason or ""}]
        results.append(result)
    for p in report.parse_errors:
        results.append({"ruleId": "parse-error", "level": "error", "message": {"text": p.message},
                        "locations": [{"physicalLocation": {"artifactLocation": {"uri": p.file},
                                                            "region": {"startLine": p.line,
                                                                       "startColumn": p.column}}}]})
    sarif = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "pgshift-lint", "informationUri": "docs/lint.md",
                                      "rules": rules}},
                  "results": results}],
    }
    return fastjson.dumps(sarif, indent=True)


def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def as_github(report: LintReport) -> str:
    out = []
    for f in report.active:
        kind = {"error": "error", "warning": "warning", "note": "notice"}[f.severity]
        message = f.message + (f"\nSafe: {f.fix}" if f.fix else "")
        out.append(f"::{kind} file={_gh_escape(f.file, True)},line={f.line},col={f.column},"
                   f"title={_gh_escape(f'{f.rule} {f.name}', True)}::{_gh_escape(message)}")
    for p in report.parse_errors:
        out.append(f"::error file={_gh_escape(p.file, True)},line={p.line},col={p.column},"
                   f"title=parse error::{_gh_escape(p.message)}")
    return "\n".join(out)


def as_gitlab(report: LintReport) -> str:
    import hashlib  # gitlab's fingerprints only: the other formats do not load OpenSSL

    severity = {"error": "critical", "warning": "major", "note": "info"}
    issues = []
    for f in report.active:
        digest = hashlib.sha1(f"{f.rule}|{f.file}|{f.statement}".encode()).hexdigest()
        issues.append({
            "description": f"{f.rule} {f.name}: {f.message}", "check_name": f.name,
            "fingerprint": digest, "severity": severity[f.severity],
            "location": {"path": f.file, "lines": {"begin": f.line}},
        })
    for p in report.parse_errors:
        issues.append({"description": f"parse error: {p.message}", "check_name": "parse-error",
                       "fingerprint": hashlib.sha1(f"parse|{p.file}|{p.line}".encode()).hexdigest(),
                       "severity": "blocker", "location": {"path": p.file, "lines": {"begin": p.line}}})
    return fastjson.dumps(issues, indent=True)
