"""The rehearsal's results as data: options, the report and its parts, and the reasons for a
fail. Below the run (which fills them) and the verdict, reports and HTML (which read them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pgshift.rehearsal import catalog
from pgshift.rehearsal.clone import Clone
from pgshift.rehearsal.recorder import StatementRecord
from pgshift.rehearsal.workload import Sample, error_messages

REPORT_VERSION = 1


@dataclass
class RehearsalOptions:
    load_rate: float = 0.0  # queries per second; 0 runs no workload
    load_threads: int = 4
    stall_budget_ms: int = 200
    large_table_rows: int | None = None  # default: settings.lint.large_table_rows
    large_table_bytes: int = 1 << 30
    test_cmd: str | None = None
    test_timeout_s: float = 1800.0
    from_backup: Path | None = None
    keep: bool = False
    check_down: bool = True
    warmup_s: float = 0.5
    cooldown_s: float = 0.5
    max_load_s: float = 900.0


@dataclass
class TestRun:
    command: str
    exit_code: int | None
    duration_s: float
    output_tail: str


@dataclass
class SchemaReport:
    before: str = ""
    after_up: str = ""
    after_down: str | None = None
    after_up_again: str | None = None
    migration_changes: list[catalog.Change] = field(default_factory=list)
    down_diff: list[catalog.Change] = field(default_factory=list)
    up_again_diff: list[catalog.Change] = field(default_factory=list)
    reversibility: str = "not checked"  # restored | differs | skipped: <why> | not checked


@dataclass
class WorkloadReport:
    rate: float
    threads: int
    tables: list[str]
    samples: list[Sample] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        latencies = sorted(s.latency_ms for s in self.samples)

        def pct(p: float) -> float | None:
            return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2) if latencies else None

        return {"queries": len(self.samples), "errors": sum(1 for s in self.samples if s.error),
                "own_errors": sum(1 for s in self.samples if s.error and s.own),
                "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": round(latencies[-1], 2) if latencies else None,
                "error_messages": error_messages(self.samples)}


@dataclass
class RehearsalReport:
    source: str
    clone: Clone | None
    kept: bool
    started_at: str
    options: RehearsalOptions
    pending: list[str] = field(default_factory=list)
    statements: list[StatementRecord] = field(default_factory=list)
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)
    workload: WorkloadReport | None = None
    test: TestRun | None = None
    schema: SchemaReport = field(default_factory=SchemaReport)
    reasons: list[Reason] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.reasons

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "fail"


@dataclass(frozen=True)
class Reason:
    # stall | rollback-stall | contract-stall | rewrite | workload-errors | down-schema | down-parse
    # | up-again-schema | test-failed | *-failed
    code: str
    message: str
    statement: str | None = None  # file:line:column

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
