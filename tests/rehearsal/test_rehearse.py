"""pgshift rehearse on a real server: verdicts, reversibility, stalls, clones always dropped,
and the source never changed."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from pgshift.config import Settings
from pgshift.errors import SqlParseError
from pgshift.rehearsal import RehearsalOptions, rehearse, to_json
from tests.rehearsal.conftest import clones_of, state

Conn = psycopg.Connection[tuple[object, ...]]
MakeSettings = Callable[[dict[str, str]], Settings]

REVERSIBLE = {
    "1_add_sku.sql": "-- pgshift:up\nALTER TABLE items ADD COLUMN sku text;\n"
                     "CREATE INDEX CONCURRENTLY items_sku_idx ON items (sku);\n"
                     "-- pgshift:down\nDROP INDEX CONCURRENTLY items_sku_idx;\nALTER TABLE items DROP COLUMN sku;\n",
    "2_enum.sql": "-- pgshift:up\nCREATE TYPE colour AS ENUM ('red', 'blue');\n"
                  "ALTER TABLE items ADD COLUMN colour colour;\n"
                  "-- pgshift:down\nALTER TABLE items DROP COLUMN colour;\nDROP TYPE colour;\n",
}


def test_reversible_migration_passes_and_source_is_untouched(
        source: Conn, db_name: str, db_url: str, settings_for: MakeSettings) -> None:
    settings = settings_for(REVERSIBLE)
    before = state(db_url)
    report = rehearse(settings, RehearsalOptions(load_rate=80, stall_budget_ms=2000))
    assert report.verdict == "pass", report.reasons
    assert report.clone is not None and report.clone.method == "template-file-copy"
    assert report.pending == ["1", "2"]
    assert report.schema.reversibility == "restored"
    assert report.schema.after_down == report.schema.before
    assert report.schema.after_up_again == report.schema.after_up
    assert [c.name for c in report.schema.migration_changes if c.category == "index"] == ["public.items_sku_idx"]
    phases = [r.phase for r in report.statements]
    assert phases == ["up"] * 4 + ["down"] * 4 + ["up-again"] * 4
    add = report.statements[0]
    assert add.sql.startswith("ALTER TABLE items ADD COLUMN sku")
    assert ("public.items", "ACCESS EXCLUSIVE") in [(lk.relation, lk.mode) for lk in add.locks]
    assert report.workload is not None and report.workload.samples
    assert {s.kind for s in report.workload.samples} >= {"read", "update"}
    assert not [s for s in report.workload.samples if s.error]
    assert clones_of(source, db_name) == []
    assert state(db_url) == before  # schema, row counts and (absent) ledger of the source
    data = to_json(report)
    assert data["verdict"] == "pass" and data["schema"]["reversibility"] == "restored"
    assert data["statements"][0]["locks"][0]["mode"] == "ACCESS EXCLUSIVE"


def test_down_that_forgets_an_index_fails_naming_it(source: Conn, db_name: str, settings_for: MakeSettings) -> None:
    settings = settings_for({
        "1_idx.sql": "-- pgshift:up\nALTER TABLE items ADD COLUMN note text;\n"
                     "CREATE INDEX items_qty_idx ON items (qty);\n"
                     "-- pgshift:down\nALTER TABLE items DROP COLUMN note;\n",
    })
    report = rehearse(settings)
    assert report.verdict == "fail"
    assert report.schema.reversibility == "differs"
    assert [(c.kind, c.category, c.name) for c in report.schema.down_diff] == [
        ("added", "index", "public.items_qty_idx")]
    reason = next(r for r in report.reasons if r.code == "down-schema")
    assert "public.items_qty_idx" in reason.message
    assert clones_of(source, db_name) == []


NAIVE = {"1_idx.sql": "CREATE INDEX items_slow_idx ON items (slow_key(id));\n"
                      "-- pgshift:down\nDROP INDEX items_slow_idx;\n"}
SAFE = {"1_idx.sql": "CREATE INDEX CONCURRENTLY items_slow_idx ON items (slow_key(id));\n"
                     "-- pgshift:down\nDROP INDEX CONCURRENTLY items_slow_idx;\n"}


def test_blocking_create_index_under_load_breaks_the_stall_budget(
        source: Conn, db_name: str, settings_for: MakeSettings) -> None:
    # 600 rows x 1 ms per slow_key() call: the build holds SHARE on items for > 600 ms.
    options = RehearsalOptions(load_rate=100, stall_budget_ms=300, warmup_s=0.3, cooldown_s=0.3)
    report = rehearse(settings_for(NAIVE), options)
    assert report.verdict == "fail"
    stall = next(r for r in report.reasons if r.code == "stall")
    assert "items_slow_idx" in stall.message and "SHARE on public.items" in stall.message
    build = report.statements[0]
    assert build.worst_latency_ms is not None and build.worst_latency_ms > 300
    assert ("public.items", "SHARE") in [(lk.relation, lk.mode) for lk in build.locks]
    assert clones_of(source, db_name) == []


def test_create_index_concurrently_under_load_passes(source: Conn, settings_for: MakeSettings) -> None:
    options = RehearsalOptions(load_rate=100, stall_budget_ms=300, warmup_s=0.3, cooldown_s=0.3)
    report = rehearse(settings_for(SAFE), options)
    assert report.verdict == "pass", report.reasons
    build = report.statements[0]
    assert build.duration_ms > 600  # as slow as the blocking build, but the workload kept going
    assert build.worst_latency_ms is not None and build.worst_latency_ms < 300
    assert build.workload_queries > 20
    assert ("public.items", "SHARE UPDATE EXCLUSIVE") in [(lk.relation, lk.mode) for lk in build.locks]


def test_without_load_a_long_blocking_lock_is_still_caught(source: Conn, settings_for: MakeSettings) -> None:
    report = rehearse(settings_for(NAIVE), RehearsalOptions(stall_budget_ms=300))
    assert [r.code for r in report.reasons] == ["stall"]
    assert "traffic would wait" in report.reasons[0].message


def test_rewrite_of_a_large_table_fails(source: Conn, settings_for: MakeSettings) -> None:
    settings = settings_for({"1_type.sql": "ALTER TABLE items ALTER COLUMN qty TYPE bigint;\n"
                                           "-- pgshift:down\nALTER TABLE items ALTER COLUMN qty TYPE int;\n"})
    report = rehearse(settings, RehearsalOptions(large_table_rows=500))
    rewrite = next(r for r in report.reasons if r.code == "rewrite")
    assert "rewrote public.items (600 rows" in rewrite.message
    assert report.statements[0].rewrites[0].table == "public.items"
    assert rehearse(settings, RehearsalOptions(large_table_rows=10_000)).verdict == "pass"


def test_failed_migration_fails_and_the_clone_is_dropped(source: Conn, db_name: str, db_url: str,
                                                         settings_for: MakeSettings) -> None:
    before = state(db_url)
    settings = settings_for({"1_bad.sql": "ALTER TABLE items ADD COLUMN ok int;\nALTER TABLE nope ADD COLUMN x int;\n"
                                          "-- pgshift:down\nALTER TABLE items DROP COLUMN ok;\n"})
    report = rehearse(settings, RehearsalOptions(load_rate=50))
    assert report.verdict == "fail"
    assert report.reasons[0].code == "migration-failed" and '"nope" does not exist' in report.reasons[0].message
    assert report.statements[-1].error is not None
    assert clones_of(source, db_name) == []
    assert state(db_url) == before


def test_test_command_runs_against_the_clone(source: Conn, db_name: str, settings_for: MakeSettings,
                                             tmp_path: Path) -> None:
    script = tmp_path / "check.py"
    script.write_text(
        "import os, sys, psycopg\n"
        "with psycopg.connect(os.environ['DATABASE_URL']) as c:\n"
        "    name = c.execute('select current_database()').fetchone()[0]\n"
        "    has = c.execute(\"select count(*) from information_schema.columns "
        "where column_name='sku'\").fetchone()[0]\n"
        "print(name)\n"
        "sys.exit(0 if name.startswith('pgshift_rehearsal_') and has == 1 else 3)\n")
    import sys
    options = RehearsalOptions(test_cmd=f"{sys.executable} {script}")
    report = rehearse(settings_for(REVERSIBLE), options)
    assert report.test is not None and report.test.exit_code == 0, report.test
    assert report.test.output_tail.strip().startswith(f"pgshift_rehearsal_{db_name}")
    failing = rehearse(settings_for(REVERSIBLE), RehearsalOptions(test_cmd=f"{sys.executable} -c 'exit(4)'"))
    assert [r.code for r in failing.reasons] == ["test-failed"] and "exited with 4" in failing.reasons[0].message


def test_busy_source_is_copied_with_pg_dump(source: Conn, db_name: str, db_url: str,
                                            settings_for: MakeSettings) -> None:
    with psycopg.connect(db_url) as busy:  # another session: a template copy is impossible
        busy.execute("SELECT 1")
        report = rehearse(settings_for(REVERSIBLE))
    assert report.clone is not None and report.clone.method == "pg_dump"
    assert report.verdict == "pass", report.reasons
    assert clones_of(source, db_name) == []


def test_clone_from_a_dump_file(source: Conn, db_name: str, db_url: str, settings_for: MakeSettings,
                                tmp_path: Path) -> None:
    from pgshift.rehearsal.clone import find_tool

    dump = tmp_path / "items.dump"
    subprocess.run([find_tool("pg_dump", 15, None), "-Fc", f"--file={dump}", f"--dbname={db_url}"], check=True)
    report = rehearse(settings_for(REVERSIBLE), RehearsalOptions(from_backup=dump))
    assert report.clone is not None and report.clone.method == "backup"
    assert report.verdict == "pass", report.reasons
    assert clones_of(source, db_name) == []


def test_keep_leaves_the_clone(source: Conn, db_name: str, settings_for: MakeSettings, pg_server: object) -> None:
    report = rehearse(settings_for(REVERSIBLE), RehearsalOptions(keep=True, check_down=False))
    assert report.clone is not None
    assert clones_of(source, db_name) == [report.clone.name]
    pg_server.drop_database(report.clone.name)  # type: ignore[attr-defined]


def test_irreversible_migration_is_a_warning(source: Conn, settings_for: MakeSettings) -> None:
    report = rehearse(settings_for({"1_x.sql": "ALTER TABLE items ADD COLUMN y int;\n"}))
    assert report.verdict == "pass"
    assert report.schema.reversibility.startswith("skipped: no down part")


def test_a_down_part_that_does_not_parse_refuses_the_reversibility_check(
        source: Conn, settings_for: MakeSettings) -> None:
    settings = settings_for({"1_x.sql": "ALTER TABLE items ADD COLUMN y int;\n-- pgshift:down\n- Drop y\n"})
    report = rehearse(settings)
    where = f"{settings.migrations_path / '1_x.sql'}:3:"
    assert report.verdict == "fail" and report.schema.after_up is not None  # the up part still ran
    assert report.schema.reversibility.startswith("refused: the down part does not parse") and where in \
        report.schema.reversibility
    assert [r.code for r in report.reasons] == ["down-parse"] and str(report.reasons[0].statement).startswith(where)
    assert not [r for r in report.statements if r.phase == "down"]  # nothing was rolled back


def test_a_pending_file_that_does_not_parse_fails_before_anything_is_copied(
        source: Conn, db_name: str, settings_for: MakeSettings) -> None:
    settings = settings_for({"1_x.sql": "ALTER TABLE items ADD COLUMN y int;\n", "2_y.sql": "ALTER TABLE items ADD;\n"})
    with pytest.raises(SqlParseError, match=r"2_y.sql:1:"):
        rehearse(settings)
    assert clones_of(source, db_name) == []


def test_rows_affected_by_a_backfill_are_recorded(source: Conn, settings_for: MakeSettings) -> None:
    settings = settings_for({"1_fill.sql": "ALTER TABLE items ADD COLUMN doubled int;\n"
                                           "UPDATE items SET doubled = qty * 2 WHERE id <= 250;\n"
                                           "-- pgshift:down\nALTER TABLE items DROP COLUMN doubled;\n"})
    report = rehearse(settings, RehearsalOptions(check_down=False))
    assert [r.rows_affected for r in report.statements] == [0, 250]
    assert ("public.items", "ROW EXCLUSIVE") in [(lk.relation, lk.mode) for lk in report.statements[1].locks]


def test_a_rollback_that_stalls_the_workload_fails_the_rehearsal(
        source: Conn, db_name: str, db_url: str, settings_for: MakeSettings) -> None:
    # The way up is safe (DROP INDEX CONCURRENTLY); the way back rebuilds the slow index with a plain
    # CREATE INDEX, which holds SHARE on items for > 600 ms under live traffic.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE INDEX items_old_idx ON items (slow_key(id))")
    options = RehearsalOptions(load_rate=100, stall_budget_ms=300, warmup_s=0.3, cooldown_s=0.3)
    report = rehearse(settings_for({
        "1_drop.sql": "-- pgshift:no-transaction\n-- pgshift:up\nDROP INDEX CONCURRENTLY items_old_idx;\n"
                      "-- pgshift:down\nCREATE INDEX items_old_idx ON items (slow_key(id));\n"}), options)
    assert report.verdict == "fail", [(r.phase, r.sql, r.duration_ms, r.worst_latency_ms, r.workload_queries)
                                      for r in report.statements]
    assert [r.code for r in report.reasons] == ["rollback-stall"], report.reasons
    assert "On rollback" in report.reasons[0].message and "SHARE on public.items" in report.reasons[0].message
    down = next(r for r in report.statements if r.phase == "down")
    assert down.worst_latency_ms is not None and down.worst_latency_ms > 300
    assert clones_of(source, db_name) == []
