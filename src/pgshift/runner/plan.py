"""Compare the migrations on disk with the history ledger: what is applied, pending, or wrong."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pgshift.db.history import AppliedRow
from pgshift.migrations.model import Migration, version_sort_key

ProblemKind = Literal["edited", "missing", "out-of-order", "interrupted-rollback"]


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    version: str
    name: str
    detail: str


@dataclass
class Plan:
    migrations: list[Migration]
    rows: dict[str, AppliedRow]
    applied: list[Migration] = field(default_factory=list)
    pending: list[Migration] = field(default_factory=list)
    below_baseline: list[Migration] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    baseline: str | None = None

    def by_version(self, version: str) -> Migration | None:
        return next((m for m in self.migrations if m.version == version), None)

    def state_of(self, migration: Migration) -> str:
        row = self.rows.get(migration.version)
        if migration in self.below_baseline:
            return "baseline"
        if row is None:
            return "pending"
        if row.status == "applied" and migration.kind == "repeatable" and row.checksum != migration.checksum:
            return "changed"
        return row.status


def _is_done(row: AppliedRow | None) -> bool:
    return row is not None and row.status in ("applied", "baseline")


def build_plan(migrations: list[Migration], rows: dict[str, AppliedRow]) -> Plan:
    plan = Plan(migrations=migrations, rows=rows)
    baselines = [r for r in rows.values() if r.status == "baseline"]
    baseline_key = max((version_sort_key(r.version) for r in baselines), default=None)
    plan.baseline = max(baselines, key=lambda r: version_sort_key(r.version)).version if baselines else None
    on_disk = {m.version for m in migrations}
    done_keys = [
        version_sort_key(v) for v, r in rows.items() if _is_done(r) and r.kind == "versioned"
    ]
    highest_done = max(done_keys, default=None)
    for m in migrations:
        row = rows.get(m.version)
        if m.kind == "repeatable":
            (plan.applied if _is_done(row) and row and row.checksum == m.checksum else plan.pending).append(m)
            continue
        if row is None and baseline_key is not None and m.sort_key <= baseline_key:
            plan.below_baseline.append(m)
            continue
        if _is_done(row):
            plan.applied.append(m)
            assert row is not None
            if row.status == "applied" and row.checksum != m.checksum:
                plan.problems.append(Problem(
                    "edited", m.version, m.name,
                    f"{m.path} was changed after it was applied (checksum {row.checksum[:12]} in "
                    f"history, {m.checksum[:12]} on disk).",
                ))
            continue
        if row is not None and row.direction == "down" and row.status in ("running", "failed"):
            plan.applied.append(m)
            plan.problems.append(Problem(
                "interrupted-rollback", m.version, m.name,
                f"the rollback of {m.label} stopped part-way ({row.status}); run `pgshift rollback` "
                "again to finish it before migrating.",
            ))
            continue
        plan.pending.append(m)
        if highest_done is not None and m.sort_key < highest_done and (row is None or row.status != "rolled_back"):
            plan.problems.append(Problem(
                "out-of-order", m.version, m.name,
                f"{m.path} is new but sorts before the newest applied migration.",
            ))
    for version, row in rows.items():
        # A failed transactional run committed nothing: deleting its file abandons it, harmlessly.
        abandoned = row.status == "failed" and row.transactional and row.direction == "up"
        if version not in on_disk and row.status in ("applied", "running", "failed") and row.kind == "versioned" \
                and not abandoned:
            plan.problems.append(Problem(
                "missing", version, row.name,
                f"migration {version} {row.name} is recorded as {row.status} but its file is gone.",
            ))
    plan.pending.sort(key=lambda m: (m.kind != "versioned", m.sort_key))
    return plan
