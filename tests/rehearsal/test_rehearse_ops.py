"""pgshift rehearse on operations migrations: their expand, abort and contract steps are recorded and
judged like SQL statements (#13.1)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from pgshift.config import Settings
from pgshift.rehearsal import RehearsalOptions, rehearse
from tests.rehearsal.conftest import clones_of

Conn = psycopg.Connection[tuple[object, ...]]
MakeSettings = Callable[[dict[str, str]], Settings]

ADD_NOTE = ("operations:\n"
            "  - add_column:\n      table: items\n"
            "      column: {name: note, type: text, default: \"'n/a'\", nullable: false}\n"
            "      up: \"'filled'\"\n")
# A plain CREATE INDEX in an ops `sql` step: 600 rows x 1 ms per slow_key() call under SHARE on items.
STALLING = ("operations:\n"
            "  - sql:\n"
            "      up: \"CREATE INDEX items_slow_idx ON items (slow_key(id))\"\n"
            "      down: \"DROP INDEX items_slow_idx\"\n")


def test_ops_steps_locks_and_backfill_are_recorded(source: Conn, db_name: str, db_url: str,
                                                   settings_for: MakeSettings) -> None:
    # Enough rows for a backfill of many batches: the lock sampler (every 5 ms) sees their row locks.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO items (name, qty) SELECT 'more ' || g, g % 7 FROM generate_series(1, 30000) g")
    settings = settings_for({"1_note.ops.yaml": ADD_NOTE})
    report = rehearse(settings, RehearsalOptions(load_rate=50, stall_budget_ms=2000, warmup_s=0.2, cooldown_s=0.2))
    assert report.passed, report.reasons
    up = [r for r in report.statements if r.phase == "up"]
    add = next(r for r in up if r.sql.startswith('ALTER TABLE "public"."items" ADD COLUMN "note"'))
    assert "expand step 1/" in add.where and add.where.startswith(str(settings.migrations_path / "1_note.ops.yaml"))
    assert ("public.items", "ACCESS EXCLUSIVE") in [(lk.relation, lk.mode) for lk in add.locks]
    fill = next(r for r in up if r.sql.startswith("backfill public.items"))
    # 30,600 rows, less those the workload's own writes had the trigger fill first
    assert fill.rows_affected is not None and fill.rows_affected > 30_000
    assert "batches" in fill.sql and fill.duration_ms > 50
    assert f"{fill.rows_affected} rows in" in fill.sql
    assert ("public.items", "ROW EXCLUSIVE") in [(lk.relation, lk.mode) for lk in fill.locks]
    assert report.workload is not None and report.workload.tables == ["public.items"]
    # abort is the rollback of an expanded ops migration: recorded under "down", then expand again
    down = [r for r in report.statements if r.phase == "down"]
    assert any('DROP COLUMN IF EXISTS "note"' in r.sql for r in down), [r.sql for r in down]
    assert all("abort step" in r.where for r in down)
    assert [r for r in report.statements if r.phase == "up-again"]
    # ... then contracted, as the deploy after the new app does: its steps are recorded and judged too.
    contract = [r for r in report.statements if r.phase == "contract"]
    assert contract and all("contract step" in r.where for r in contract), [r.where for r in contract]
    assert "contract" in report.phases
    assert clones_of(source, db_name) == []


def test_an_ops_step_that_stalls_the_workload_fails_the_rehearsal(
        source: Conn, db_name: str, settings_for: MakeSettings) -> None:
    options = RehearsalOptions(load_rate=100, stall_budget_ms=300, warmup_s=0.3, cooldown_s=0.3, check_down=False)
    report = rehearse(settings_for({"1_idx.ops.yaml": STALLING}), options)
    assert report.verdict == "fail", report.statements
    stall = next(r for r in report.reasons if r.code == "stall")
    assert "items_slow_idx" in stall.message and "SHARE on public.items" in stall.message
    assert "expand step 1/1: sql #0 up" in stall.message
    build = next(r for r in report.statements if "items_slow_idx" in r.sql and r.error is None)
    assert build.worst_latency_ms is not None and build.worst_latency_ms > 300
    # Without load the lock held is still judged.
    quiet = rehearse(settings_for({"1_idx.ops.yaml": STALLING}), RehearsalOptions(stall_budget_ms=300,
                                                                                   check_down=False))
    assert [r.code for r in quiet.reasons] == ["stall"] and "traffic would wait" in quiet.reasons[0].message
    assert clones_of(source, db_name) == []
