"""Data the linter passes around: rules and their metadata, findings, reports, table sizes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pgshift.lint.schema import TableSize as TableSize  # lives with the schema rules see; imported from here too

if TYPE_CHECKING:
    from pgshift.lint.context import Ctx

Severity = Literal["error", "warning", "note"]
SEVERITIES: tuple[Severity, ...] = ("note", "warning", "error")


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


@dataclass(frozen=True)
class AutoFix:
    """A mechanical rewrite: ``inline`` replaces the statement in its file (may be empty);
    ``deferred`` statements go to a follow-up migration run outside a transaction."""

    inline: str
    deferred: tuple[str, ...] = ()


@dataclass(slots=True)
class Hit:
    """What a rule's check yields for one statement."""

    message: str
    table: str | None = None
    fix: str | None = None
    severity: Severity | None = None  # overrides the rule's default (version/size dependent)
    autofix: AutoFix | None = None
    lock: str | None = None
    scaled: bool = True  # False: a statement that fails at run time, whatever the table's size


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    summary: str
    lock: str  # lock level taken, "" when none
    blocks: tuple[str, ...]  # traffic blocked while it is held: reads, writes, ddl
    rewrites: bool  # rewrites the whole table
    scans: bool  # reads the whole table while holding the lock
    versions: str  # where behaviour differs between PostgreSQL major versions
    bad: str
    good: str
    safe: str  # the safe alternative, in words
    severity: Severity
    kinds: tuple[str, ...]  # parse-tree node kinds the check looks at; ("*",) for all
    check: Callable[[Ctx], Iterable[Hit]]
    # For ALTER TABLE: the command subtypes the check looks at (empty: all), so the engine can
    # skip the rule for other ALTER TABLE statements without calling it.
    subtypes: tuple[str, ...] = ()
    # The check finds nothing outside a transaction (its first test is ``ctx.tx.active``), so the engine
    # skips it for auto-committed statements without calling it.
    in_transaction: bool = False
    # A flag the check adds to ctx.unit.flags with its finding, after which (its first test) it finds nothing
    # more in that unit, so the engine stops calling it there (a once-per-migration finding).
    done_when: str = ""
    destructive: bool = False
    impact_scaled: bool = False  # severity follows table size when sizes are known
    applies_to_new_tables: bool = False  # also fires on tables created in the same migration
    category: str = "locking"
    # Extra pg_version for the meta-test's examples (rules that only matter on some versions).
    example_version: int | None = None
    # Schema (already applied migrations) the bad and good examples are judged against.
    setup: str = ""
    # Also judges the SQL text of a statement that does not parse (a field, not an attribute set on
    # check: a function compiled with mypyc takes no attributes).
    on_parse_error: Callable[[str], Iterable[Hit]] | None = None


@dataclass(slots=True)  # tens of thousands in a large report: slots halve their memory and creation time
class Finding:
    rule: str
    name: str
    severity: Severity
    file: str
    line: int
    column: int
    message: str
    statement: str
    migration: str | None = None
    lock: str | None = None
    blocks: tuple[str, ...] = ()
    fix: str | None = None
    destructive: bool = False
    suppressed: bool = False
    suppress_reason: str | None = None
    autofix: AutoFix | None = None
    statement_index: int = 0
    part: str = "up"  # "down" for a migration's rollback part

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "name": self.name, "severity": self.severity, "file": self.file,
            "line": self.line, "column": self.column, "message": self.message,
            "statement": self.statement, "migration": self.migration, "part": self.part, "lock": self.lock,
            "blocks": list(self.blocks), "fix": self.fix, "destructive": self.destructive,
            "suppressed": self.suppressed, "suppress_reason": self.suppress_reason,
        }


@dataclass
class ParseProblem:
    file: str
    line: int
    column: int
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column, "message": self.message}


@dataclass
class LockStep:
    """Locks held after one statement of a migration, accumulated over its transaction."""

    migration: str | None
    file: str
    line: int
    statement: str
    in_transaction: bool
    held: dict[str, str]

    def blocked(self) -> dict[str, tuple[str, ...]]:
        from pgshift.lint.locks import BLOCKS

        return {table: BLOCKS[level] for table, level in self.held.items() if BLOCKS[level]}

    def to_json(self) -> dict[str, Any]:
        return {"migration": self.migration, "file": self.file, "line": self.line,
                "statement": self.statement, "in_transaction": self.in_transaction,
                "held": self.held, "blocks": {t: list(b) for t, b in self.blocked().items()}}


@dataclass
class LintReport:
    findings: list[Finding] = field(default_factory=list)
    parse_errors: list[ParseProblem] = field(default_factory=list)
    lock_steps: list[LockStep] = field(default_factory=list)
    pg_version: int = 16
    files: int = 0
    statements: int = 0

    @property
    def active(self) -> list[Finding]:
        return [f for f in self.findings if not f.suppressed]

    def count(self, severity: str) -> int:
        return self.counts().get(severity, 0)

    def counts(self) -> dict[str, int]:
        """Active findings per severity, in one pass (a report can hold tens of thousands)."""
        found = {"error": 0, "warning": 0, "note": 0}
        for f in self.findings:
            if not f.suppressed:
                found[f.severity] = found.get(f.severity, 0) + 1
        return found

    def failed(self, fail_level: str) -> bool:
        """Whether a finding blocks at ``fail_level`` (see :func:`lint_verdict`; parse errors apart)."""
        return bool(lint_verdict(self, fail_level).blocking)

    def has_destructive(self, version: str | None = None) -> bool:
        """Whether a migration (or any, when ``version`` is None) drops or truncates data.
        Suppressed findings count: a suppression silences the warning, not the data loss."""
        return any(f.destructive and (version is None or f.migration == version) for f in self.findings)

    def is_destructive(self, migration: Any) -> bool:
        return self.has_destructive(str(migration.version))

    def to_json(self) -> dict[str, Any]:
        counts = self.counts()
        return {
            "schema": "pgshift-lint/1",
            "pg_version": self.pg_version,
            "summary": {
                "files": self.files, "statements": self.statements,
                "errors": counts["error"], "warnings": counts["warning"],
                "notes": counts["note"],
                "suppressed": sum(1 for f in self.findings if f.suppressed),
                "parse_errors": len(self.parse_errors),
            },
            "findings": [f.to_json() for f in self.findings],
            "parse_errors": [p.to_json() for p in self.parse_errors],
        }


@dataclass(frozen=True)
class LintVerdict:
    """What blocks, by the one lint policy `migrate`'s gate, `check` and `lint` apply."""

    fail_level: str
    blocking: tuple[Finding, ...]  # not suppressed, at or above fail_level
    parse_errors: tuple[ParseProblem, ...]

    @property
    def failed(self) -> bool:
        return bool(self.blocking or self.parse_errors)

    def describe(self, limit: int = 5) -> str:
        """``file:line: RULE name: message`` of the first ``limit`` blocking findings (or parse errors)."""
        lines = [f"{f.file}:{f.line}: {f.rule} {f.name}: {f.message.rstrip('.')}" for f in self.blocking]
        lines += [f"{p.file}:{p.line}:{p.column}: {p.message}" for p in self.parse_errors]
        more = f" (and {len(lines) - limit} more)" if len(lines) > limit else ""
        return "; ".join(lines[:limit]) + more


def lint_verdict(report: LintReport, fail_level: str) -> LintVerdict:
    """The lint policy: an active (not suppressed) finding at or above ``fail_level`` blocks, and so
    does a statement that does not parse. An unknown level blocks errors only."""
    floor = severity_rank(fail_level) if fail_level in SEVERITIES else severity_rank("error")
    return LintVerdict(fail_level, tuple(f for f in report.active if severity_rank(f.severity) >= floor),
                       tuple(report.parse_errors))
