"""Operations on a partitioned table (9 leaf partitions under a table of 8 partitions, one of them
partitioned again, one with a name that needs quoting), on a real server: what PostgreSQL refuses or
does under a long lock on a partitioned parent is done partition by partition."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgshift import api
from pgshift.errors import LockTimeoutExhausted, MigrationFailed
from pgshift.ops import service
from tests.ops.helpers import make_project, snapshot

Conn = psycopg.Connection[Any]
QUOTED = 'Events P6 "q"'  # a leaf partition named with capitals, a space and a quote


def setup_sql(table: str = "events", *, primary_key: bool = True, rows: int = 5000) -> str:
    """``table`` partitioned by range of k into 8 partitions; the last is partitioned again in two."""
    t = sql.Identifier(table).as_string()
    key = ", PRIMARY KEY (id, k)" if primary_key else ""
    out = ["CREATE TABLE ref (id int PRIMARY KEY); INSERT INTO ref SELECT generate_series(1, 10);",
           f"CREATE TABLE {t} (id bigint NOT NULL, k int NOT NULL, note text, ref_id int{key}) PARTITION BY RANGE (k);"]
    for i in range(6):
        out.append(f"CREATE TABLE {sql.Identifier(f'{table}_p{i}').as_string()} PARTITION OF {t} "
                   f"FOR VALUES FROM ({i * 100}) TO ({(i + 1) * 100});")
    out.append(f"CREATE TABLE {sql.Identifier(QUOTED).as_string()} PARTITION OF {t} FOR VALUES FROM (600) TO (700);")
    p7 = sql.Identifier(f"{table}_p7").as_string()
    out.append(f"CREATE TABLE {p7} PARTITION OF {t} FOR VALUES FROM (700) TO (800) PARTITION BY RANGE (k);")
    out.append(f"CREATE TABLE {sql.Identifier(f'{table}_p7a').as_string()} PARTITION OF {p7} "
               "FOR VALUES FROM (700) TO (750);")
    out.append(f"CREATE TABLE {sql.Identifier(f'{table}_p7b').as_string()} PARTITION OF {p7} "
               "FOR VALUES FROM (750) TO (800);")
    out.append(f"INSERT INTO {t} SELECT g, g % 800, 'n' || g, g % 10 + 1 FROM generate_series(1, {rows}) g;")
    return "\n".join(out) + "\n"


def leaves(conn: Conn, table: str = "events") -> list[str]:
    return [str(r[0]) for r in conn.execute(
        "SELECT relid::regclass::text FROM pg_partition_tree(%s::regclass) WHERE isleaf ORDER BY 1",
        (sql.Identifier(table).as_string(conn),)).fetchall()]


def project(tmp_path: Path, db_url: str, setup: str, operations: list[dict[str, Any]], **options: Any) -> Any:
    settings = make_project(tmp_path, db_url, {"001_setup.sql": setup})
    api.migrate(settings)
    (tmp_path / "migrations" / "002_change.ops.yaml").write_text(json.dumps({**options, "operations": operations}))
    return settings


def indexes(conn: Conn, name: str) -> list[tuple[str, str, bool, str | None]]:
    """(index, its table, valid, the index it is attached to) for ``name`` and every partition's index
    attached below it."""
    return [(str(a), str(b), bool(c), d) for a, b, c, d in conn.execute(
        """
        SELECT i.indexrelid::regclass::text, i.indrelid::regclass::text, i.indisvalid,
               (SELECT h.inhparent::regclass::text FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
        FROM pg_partition_tree(%s::regclass) t JOIN pg_index i ON i.indexrelid = t.relid ORDER BY 2
        """, (name,)).fetchall()]


# -- create_index ----------------------------------------------------------------------------------
def test_create_index_builds_each_partition_concurrently_under_an_index_on_only_the_parent(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    settings = project(tmp_path, db_url, setup_sql(), [
        {"create_index": {"table": "events", "name": "events_note_idx", "columns": ["note"]}}])
    before = snapshot(conn)
    text = api.migrate(settings, dry_run=True).dry_run[0].sql
    # No plain CREATE INDEX on a table with rows: each leaf's is built CONCURRENTLY, the parents' ON ONLY.
    assert text.count("CREATE INDEX CONCURRENTLY IF NOT EXISTS") == 9, text
    assert 'CREATE INDEX IF NOT EXISTS "events_note_idx" ON ONLY "public"."events" ("note");' in text, text
    assert 'ON ONLY "public"."events_p7" ("note");' in text, text
    assert 'ON "public"."Events P6 ""q""" ("note");' in text, text
    assert text.count("ATTACH PARTITION") == 10, text
    expanded = api.migrate(settings)
    assert [m.version for m in expanded.applied] == ["002"]
    found = indexes(conn, "events_note_idx")
    # The parent's, the partitioned partition's and the 9 leaves', all valid and attached up the tree.
    assert len(found) == 1 + 1 + 9 and all(valid for _, _, valid, _ in found), found
    by_table = {t: (i, parent) for i, t, _, parent in found}
    assert by_table["events"] == ("events_note_idx", None)
    assert by_table["events_p7"] == ("events_p7_events_note_idx", "events_note_idx")
    assert by_table["events_p7a"] == ("events_p7a_events_note_idx", "events_p7_events_note_idx")
    assert by_table['"Events P6 ""q"""'] == ('"Events P6 ""q""_events_note_idx"', "events_note_idx")
    assert by_table["events_p0"] == ("events_p0_events_note_idx", "events_note_idx")
    service.abort(settings)
    assert snapshot(conn) == before
    api.migrate(settings)
    service.contract(settings)
    assert api.status(settings).expanded == {}
    assert len(indexes(conn, "events_note_idx")) == 11


def test_a_partition_whose_build_fails_or_is_killed_is_rebuilt_on_rerun_and_the_rest_is_kept(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    setup = setup_sql() + ("INSERT INTO events VALUES (90001, 650, 'dup', 1), (90002, 650, 'dup', 1), "
                           "(90003, 760, 'dup', 1), (90004, 760, 'dup', 1);\n")
    settings = project(tmp_path, db_url, setup, [
        {"create_index": {"table": "events", "name": "events_note_key", "columns": ["note", "k"], "unique": True}}])
    child = f"{QUOTED}_events_note_key"
    with pytest.raises(MigrationFailed, match="could not create unique index"):
        api.migrate(settings)  # the quoted partition is built first
    assert conn.execute("SELECT 1 FROM pg_class WHERE relname = %s", (child,)).fetchone() is None  # dropped
    # A build killed part-way leaves its INVALID index behind, as this one does.
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON {} (note, k)").format(
            sql.Identifier(child), sql.Identifier(QUOTED)))
    conn.execute("UPDATE events SET note = 'dup2' WHERE id = 90002")
    again: list[str] = []
    with pytest.raises(MigrationFailed, match="could not create unique index"):
        api.migrate(settings, notify=again.append)  # now events_p7b, the last leaf, fails
    assert any("dropping INVALID index" in n and "Events P6" in n for n in again), again
    # Every partition built before it is kept, attached, valid: 7 of the 9 leaves, and p7a's under p7's index.
    assert sum(valid for _, _, valid, _ in indexes(conn, "events_note_key")) == 7
    conn.execute("UPDATE events SET note = 'dup2' WHERE id = 90004")
    report = api.migrate(settings)
    assert report.applied[0].resumed_at is not None and report.applied[0].resumed_at > 10
    found = indexes(conn, "events_note_key")
    assert len(found) == 11 and all(valid for _, _, valid, _ in found), found
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO events VALUES (90005, 650, 'dup', 1)")
    service.abort(settings)
    assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE '%%events_note_key'").fetchone() == (0,)


def test_abort_of_an_index_expand_stopped_part_way_drops_the_unattached_partition_indexes(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    setup = setup_sql() + "INSERT INTO events VALUES (90003, 760, 'dup', 1), (90004, 760, 'dup', 1);\n"
    settings = project(tmp_path, db_url, setup, [
        {"create_index": {"table": "events", "name": "events_note_key", "columns": ["note", "k"], "unique": True}}])
    before = snapshot(conn)
    with pytest.raises(MigrationFailed, match="could not create unique index"):
        api.migrate(settings)
    # 8 leaves built (p7a's attached to p7's, not attached to the parent's yet), and the 2 ON ONLY indexes.
    assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE '%%events_note_key'").fetchone() == (10,)
    result = service.abort(settings)
    assert snapshot(conn) == before
    assert any("cannot drop its index events_note_key CONCURRENTLY" in w for w in result.warnings), result.warnings


# -- drop_index ----------------------------------------------------------------------------------------
def test_drop_index_of_a_partitioned_table_drops_it_in_one_transaction_retried_under_a_held_lock(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    """PostgreSQL refuses DROP INDEX CONCURRENTLY on a partitioned index: contract drops it (and its 10
    partitions' indexes) in one transaction under lock_timeout. A session holding one partition makes every
    attempt time out; nothing is dropped, the migration stays expanded (abortable), and the rerun finishes."""
    settings = project(tmp_path, db_url, setup_sql() + "CREATE INDEX events_note_idx ON events (note);\n",
                       [{"drop_index": {"name": "events_note_idx"}}], lock_timeout="50ms", lock_retries=2)
    assert len(indexes(conn, "events_note_idx")) == 11
    before = snapshot(conn)
    text = api.migrate(settings, dry_run=True).dry_run[0].sql
    assert "-- then `pgshift contract` step 1/2 (drop partitioned index public.events_note_idx and its " \
           "partitions' indexes): warning: public.events_note_idx is the index of the partitioned table " \
           "public.events: PostgreSQL cannot drop it CONCURRENTLY" in text, text
    assert "ACCESS EXCLUSIVE lock on public.events and those partitions" in text and "10 partitions" in text, text
    api.migrate(settings)
    with psycopg.connect(db_url) as reader:
        reader.execute('SELECT count(*) FROM "Events P6 ""q"""')  # a leaf: its lock is needed too
        holder = reader.info.backend_pid
        notes: list[str] = []
        with pytest.raises(LockTimeoutExhausted) as caught:
            service.contract(settings, notify=notes.append)
        reader.rollback()
    message = caught.value.message
    assert "could not take its lock within lock_timeout 50ms after 3 attempts" in message, message
    assert f"pid {holder}" in message and "Nothing of the step was committed" in message, message
    assert "still expanded" in (caught.value.hint or "") and "`pgshift abort`" in (caught.value.hint or "")
    assert any(n.startswith("warning: ") and "ACCESS EXCLUSIVE" in n for n in notes), notes
    assert len(indexes(conn, "events_note_idx")) == 11  # all or nothing
    assert api.status(settings).expanded == {"002": "expanded"}
    service.abort(settings)  # as the hint says: the index is where it was
    assert snapshot(conn) == before
    api.migrate(settings)
    result = service.contract(settings)
    assert any("cannot drop it CONCURRENTLY" in w for w in result.warnings), result.warnings
    assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE '%%note_idx'").fetchone() == (0,)
    assert api.status(settings).expanded == {}


def test_drop_index_of_a_partitions_attached_index_is_refused_before_anything_runs(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    from pgshift.errors import MigrationSourceError

    settings = project(tmp_path, db_url, setup_sql() + "CREATE INDEX events_note_idx ON events (note);\n",
                       [{"drop_index": {"name": "events_p7a_note_idx"}}])
    before = snapshot(conn)
    with pytest.raises(MigrationSourceError, match=r"public\.events_p7a_note_idx is a partition's index attached "
                       r"to the partitioned index public\.events_note_idx") as caught:
        api.migrate(settings)
    assert caught.value.exit_code == 6 and "name public.events_note_idx in drop_index" in (caught.value.hint or "")
    assert snapshot(conn) == before and api.status(settings).expanded == {}


# -- add_foreign_key ---------------------------------------------------------------------------------
FK = {"add_foreign_key": {"table": "events", "name": "events_ref_fk", "columns": ["ref_id"],
                          "references_table": "ref", "references_columns": ["id"]}}


def foreign_keys(conn: Conn) -> list[tuple[str, bool, bool]]:
    """(table, validated, attached to the parent's) of every constraint named events_ref_fk."""
    return [(str(a), bool(b), bool(c)) for a, b, c in conn.execute(
        "SELECT conrelid::regclass::text, convalidated, conparentid <> 0 FROM pg_constraint "
        "WHERE conname = 'events_ref_fk' ORDER BY 1").fetchall()]


def test_add_foreign_key_goes_on_each_partition_not_valid_then_on_the_table_at_contract(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    assert conn.info.server_version < 180000  # the per-partition path; 18 takes NOT VALID on the table itself
    settings = project(tmp_path, db_url, setup_sql(), [FK])
    before = snapshot(conn)
    api.migrate(settings)
    leaf_names = leaves(conn)
    assert len(leaf_names) == 9
    # Each leaf checks new rows at once; the table has none yet (PostgreSQL < 18 refuses it NOT VALID).
    assert foreign_keys(conn) == sorted((name, False, False) for name in leaf_names)
    for k in (5, 650, 760):
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("INSERT INTO events VALUES (99999, %s, 'x', 42)", (k,))
    service.abort(settings)
    assert snapshot(conn) == before
    api.migrate(settings)
    service.contract(settings)
    found = foreign_keys(conn)
    # The table's and p7's (added by PostgreSQL on the partitioned partition), each leaf's attached to it.
    assert ("events", True, False) in found and ("events_p7", True, True) in found
    assert [f for f in found if f[0] in leaf_names] == sorted((name, True, True) for name in leaf_names)
    assert len(found) == 11


def test_an_orphan_row_in_one_partition_stops_contract_at_its_validation_and_abort_still_undoes_it(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    settings = project(tmp_path, db_url, setup_sql(), [FK])
    before = snapshot(conn)
    api.migrate(settings)
    conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT events_ref_fk").format(sql.Identifier(QUOTED)))
    conn.execute("INSERT INTO events VALUES (99999, 650, 'orphan', 42)")
    conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT events_ref_fk FOREIGN KEY (ref_id) REFERENCES ref (id) "
                         "NOT VALID").format(sql.Identifier(QUOTED)))
    with pytest.raises(MigrationFailed, match="violates foreign key constraint"):
        service.contract(settings)
    assert api.status(settings).expanded == {"002": "expanded"}
    service.abort(settings)
    conn.execute("DELETE FROM events WHERE id = 99999")
    assert snapshot(conn) == before


def test_on_postgresql_18_the_foreign_key_is_planned_not_valid_on_the_table_itself(conn: Conn) -> None:
    """PostgreSQL 18 takes a NOT VALID foreign key on a partitioned table: the plan for a server of that
    version (the facts say which) is the plain one; this 15 server's is per partition."""
    from dataclasses import replace

    from pgshift.ops.model import parse_document
    from pgshift.ops.plan import capture, plan_phases

    conn.execute(setup_sql())
    ops = parse_document({"operations": [FK]}, "f.ops.yaml")
    facts = capture(conn, ops)
    on_15 = plan_phases(ops, "002", facts)
    assert len(on_15.expand) == 9 and len(on_15.contract) == 9 + 1 + 1  # validations, the table's, version schema
    on_18 = plan_phases(ops, "002", replace(facts, server_version=180000))
    assert [s.statements[0].as_string(conn) for s in on_18.expand] == [
        'ALTER TABLE "public"."events" ADD CONSTRAINT "events_ref_fk" FOREIGN KEY ("ref_id") REFERENCES '
        '"public"."ref" ("id") NOT VALID']
    assert on_18.contract[0].statements[0].as_string(conn) == (
        'ALTER TABLE "public"."events" VALIDATE CONSTRAINT "events_ref_fk"')


# -- the backfill, partition by partition -------------------------------------------------------------
@pytest.mark.parametrize("primary_key", [True, False], ids=["key", "no-key"])
def test_add_column_backfills_every_partition_each_as_its_own_job(
        tmp_path: Path, db_url: str, conn: Conn, primary_key: bool) -> None:
    settings = project(tmp_path, db_url, setup_sql(primary_key=primary_key), [
        {"add_column": {"table": "events", "column": {"name": "tag", "type": "text", "nullable": False},
                        "up": "'t' || k"}}])
    api.migrate(settings)
    # Without a key the table itself has no pages to walk by ctid: each partition's are walked instead.
    assert conn.execute("SELECT count(*) FROM events WHERE tag IS DISTINCT FROM 't' || k").fetchone() == (0,)
    jobs = conn.execute("SELECT job, table_name, rows_done, status FROM pgshift.backfills ORDER BY job").fetchall()
    assert len(jobs) == 9 and {j[3] for j in jobs} == {"done"} and sum(j[2] for j in jobs) == 5000, jobs
    assert any(j[1] == 'public."Events P6 ""q"""' and j[0].endswith('[public."Events P6 ""q"""]') for j in jobs)
    conn.execute("INSERT INTO events (id, k, note) VALUES (99999, 650, 'old version')")  # the trigger fills it
    service.contract(settings)
    assert conn.execute("SELECT tag FROM events WHERE id = 99999").fetchone() == ("t650",)
    # SET NOT NULL on the table reaches every partition.
    assert conn.execute("SELECT bool_and(attnotnull), count(*) FROM pg_attribute WHERE attname = 'tag' AND "
                        "attrelid IN (SELECT relid FROM pg_partition_tree('events'))").fetchone() == (True, 11)


def test_the_backfill_command_on_a_partitioned_table_resumes_each_partition(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    from pgshift.runner.backfill import BackfillOptions, BackfillSpec

    settings = project(tmp_path, db_url, setup_sql(primary_key=False), [{"sql": {"up": "SELECT 1"}}])
    spec = BackfillSpec("events", "note = upper(note)", "note <> upper(note)", job="upper")
    result = api.backfill(settings, spec, BackfillOptions(initial_batch=100, max_lag_s=None))
    assert (result.rows, result.mode) == (5000, "partition by partition (9 partitions), each by ctid")
    assert conn.execute("SELECT count(*) FROM events WHERE note <> upper(note)").fetchone() == (0,)
    again = api.backfill(settings, spec)
    assert again.already_done and again.rows_this_run == 0
    restarted = api.backfill(settings, spec, restart=True)  # forgets every partition's progress
    assert not restarted.already_done


# -- every operation that changes a table, on a partitioned one ---------------------------------------
PARTITIONED_OPS: dict[str, dict[str, Any]] = {
    "create_index": {"create_index": {"table": "events", "name": "events_note_idx", "columns": ["note"]}},
    "add_column": {"add_column": {"table": "events", "column": {"name": "tag", "type": "text", "nullable": False,
                                                                "default": "'x'"}, "up": "'t' || k"}},
    "set_not_null": {"set_not_null": {"table": "events", "column": "note", "up": "'none'"}},
    "add_check": {"add_check": {"table": "events", "name": "events_k_positive", "check": "k >= 0"}},
    "add_foreign_key": FK,
    "rename_column": {"rename_column": {"table": "events", "from": "note", "to": "body"}},
    "change_column_type": {"change_column_type": {"table": "events", "column": "ref_id", "type": "bigint"}},
}
# What each leaves on every partition once contracted: a query over the partition tree that returns no row.
LEFT_WRONG = {
    "create_index": "SELECT relid FROM pg_partition_tree('events') t WHERE NOT EXISTS (SELECT FROM pg_index i "
                    "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = t.relid AND i.indisvalid AND "
                    "c.relname LIKE '%%events_note_idx')",
    "add_column": "SELECT relid FROM pg_partition_tree('events') t WHERE NOT EXISTS (SELECT FROM pg_attribute "
                  "WHERE attrelid = t.relid AND attname = 'tag' AND attnotnull) UNION ALL "
                  "SELECT NULL FROM events WHERE tag IS DISTINCT FROM 't' || k AND id < 99999",
    "set_not_null": "SELECT relid FROM pg_partition_tree('events') t WHERE NOT EXISTS (SELECT FROM pg_attribute "
                    "WHERE attrelid = t.relid AND attname = 'note' AND attnotnull) UNION ALL "
                    "SELECT NULL FROM events WHERE note IS NULL",
    "add_check": "SELECT relid FROM pg_partition_tree('events') t WHERE NOT EXISTS (SELECT FROM pg_constraint "
                 "WHERE conrelid = t.relid AND conname = 'events_k_positive' AND convalidated)",
    "add_foreign_key": "SELECT relid FROM pg_partition_tree('events') t WHERE NOT EXISTS (SELECT FROM pg_constraint "
                       "WHERE conrelid = t.relid AND contype = 'f' AND convalidated)",
    "rename_column": "SELECT relid FROM pg_partition_tree('events') t WHERE NOT EXISTS (SELECT FROM pg_attribute "
                     "WHERE attrelid = t.relid AND attname = 'body') UNION ALL "
                     "SELECT NULL FROM events WHERE body IS DISTINCT FROM 'n' || id AND id < 99999",
    "change_column_type": "SELECT relid FROM pg_partition_tree('events') t WHERE NOT EXISTS (SELECT FROM "
                          "pg_attribute WHERE attrelid = t.relid AND attname = 'ref_id' AND atttypid = 'bigint'"
                          "::regtype) UNION ALL SELECT NULL FROM events WHERE ref_id <> id % 10 + 1 AND id < 99999",
}


@pytest.mark.parametrize("kind", list(PARTITIONED_OPS))
def test_each_operation_on_a_partitioned_table_expands_aborts_to_the_same_catalog_and_contracts(
        tmp_path: Path, db_url: str, conn: Conn, kind: str) -> None:
    setup = setup_sql() + "UPDATE events SET note = NULL WHERE id % 7 = 0;\n" * (kind == "set_not_null")
    settings = project(tmp_path, db_url, setup, [PARTITIONED_OPS[kind]])
    before = snapshot(conn)
    api.migrate(settings)
    service.abort(settings)
    assert snapshot(conn) == before
    api.migrate(settings)
    # The old version keeps writing to every partition while expanded.
    conn.execute("INSERT INTO events (id, k, ref_id) SELECT 99999 + g, g * 100 + 5, 1 FROM generate_series(0, 7) g")
    service.contract(settings)
    assert api.status(settings).expanded == {}
    assert conn.execute(LEFT_WRONG[kind]).fetchall() == []


def test_a_moved_column_takes_its_index_and_foreign_key_along_partition_by_partition(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    setup = setup_sql() + ("CREATE INDEX events_note_idx ON events (note);\n"
                           "ALTER TABLE events ADD CONSTRAINT events_ref_fk FOREIGN KEY (ref_id) REFERENCES ref;\n")
    settings = project(tmp_path, db_url, setup, [
        {"rename_column": {"table": "events", "from": "note", "to": "body"}},
        {"change_column_type": {"table": "events", "column": "ref_id", "type": "bigint"}}])
    before = snapshot(conn)
    text = api.migrate(settings, dry_run=True).dry_run[0].sql
    assert "CREATE INDEX IF NOT EXISTS" in text and "ON ONLY" in text, text  # the parent's copy, empty
    assert text.count("CREATE INDEX CONCURRENTLY IF NOT EXISTS") == 9, text
    api.migrate(settings)
    service.abort(settings)
    assert snapshot(conn) == before
    api.migrate(settings)
    service.contract(settings)
    found = indexes(conn, "events_note_idx")
    assert len(found) == 11 and all(valid for _, _, valid, _ in found), found
    assert conn.execute("SELECT pg_get_indexdef('events_note_idx'::regclass)").fetchone() == (
        "CREATE INDEX events_note_idx ON ONLY public.events USING btree (body)",)
    fks = conn.execute("SELECT conrelid::regclass::text, pg_get_constraintdef(oid), convalidated, conparentid <> 0 "
                       "FROM pg_constraint WHERE contype = 'f' ORDER BY 1").fetchall()
    assert ("events", "FOREIGN KEY (ref_id) REFERENCES ref(id)", True, False) in fks
    assert len(fks) == 11 and all(f[2] for f in fks) and sum(f[3] for f in fks) == 10, fks
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("INSERT INTO events (id, k, ref_id) VALUES (99999, 650, 42)")


@pytest.mark.parametrize("column,message", [
    ("k", "is in the partition key of events; PostgreSQL cannot drop a partition key column"),
    ("id", "is in the PRIMARY KEY constraint events_pkey of the partitioned table events"),
])
def test_a_column_a_partitioned_table_cannot_have_moved_is_refused_before_anything_runs(
        tmp_path: Path, db_url: str, conn: Conn, column: str, message: str) -> None:
    from pgshift.errors import MigrationSourceError

    settings = project(tmp_path, db_url, setup_sql(), [
        {"change_column_type": {"table": "events", "column": column, "type": "numeric"}}])
    before = snapshot(conn)
    with pytest.raises(MigrationSourceError, match=message) as caught:
        api.migrate(settings)
    assert caught.value.exit_code == 6 and caught.value.hint
    assert snapshot(conn) == before


# -- detach_partition ----------------------------------------------------------------------------------
def attached(conn: Conn, partition: str) -> list[tuple[str, bool]]:
    return [(str(a), bool(b)) for a, b in conn.execute(
        "SELECT inhparent::regclass::text, inhdetachpending FROM pg_inherits WHERE inhrelid = %s::regclass",
        (partition,)).fetchall()]


@pytest.mark.parametrize("partition", ["events_p2", QUOTED])
def test_detach_partition_detaches_concurrently_and_abort_attaches_it_again(
        tmp_path: Path, db_url: str, conn: Conn, partition: str) -> None:
    settings = project(tmp_path, db_url, setup_sql(), [
        {"detach_partition": {"table": "events", "partition": partition}}])
    before = snapshot(conn)
    ident = sql.Identifier(partition).as_string(conn)
    text = api.migrate(settings, dry_run=True).dry_run[0].sql
    assert "(autocommit: cannot run in a transaction)" in text
    assert "-- skipped when an earlier run did it: SELECT NOT EXISTS (SELECT FROM pg_inherits" in text, text
    assert f'ALTER TABLE "public"."events" DETACH PARTITION "public".{sql.Identifier(partition).as_string(conn)} ' \
           "CONCURRENTLY;" in text, text
    rows = conn.execute(f"SELECT count(*) FROM {ident}").fetchone()
    api.migrate(settings)
    assert attached(conn, ident) == []
    assert conn.execute(f"SELECT count(*) FROM {ident}").fetchone() == rows  # its rows stay in it
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (5000 - rows[0],)  # type: ignore[index]
    result = service.abort(settings)
    assert attached(conn, ident) == [("events", False)] and result.warnings == []
    assert snapshot(conn) == before  # the CHECK the concurrent detach left is gone
    api.migrate(settings)
    service.contract(settings)
    assert attached(conn, ident) == []


def test_with_a_default_partition_detach_is_plain_and_says_what_it_locks(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    setup = setup_sql() + "CREATE TABLE events_other PARTITION OF events DEFAULT;\n"
    settings = project(tmp_path, db_url, setup, [{"detach_partition": {"table": "events", "partition": "events_p2"}}])
    before = snapshot(conn)
    text = api.migrate(settings, dry_run=True).dry_run[0].sql
    assert "CONCURRENTLY;" not in text and 'DETACH PARTITION "public"."events_p2";' in text, text
    assert "it has a DEFAULT partition (events_other)" in text and "ACCESS EXCLUSIVE lock on the table" in text
    notes: list[str] = []
    api.migrate(settings, notify=notes.append)
    assert any(n.startswith("warning: ") and "ACCESS EXCLUSIVE" in n for n in notes), notes
    assert attached(conn, "events_p2") == []
    result = service.abort(settings)
    assert any("scans it (and the DEFAULT partition)" in w for w in result.warnings), result.warnings
    assert snapshot(conn) == before


def test_a_detach_left_pending_by_an_interruption_is_finished_by_the_rerun(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    import threading
    import time

    settings = project(tmp_path, db_url, setup_sql(), [
        {"detach_partition": {"table": "events", "partition": "events_p2"}}])
    # An old snapshot makes DETACH ... CONCURRENTLY wait after its first transaction; cancelled there, it is
    # left pending, as a killed pgshift would leave it.
    holder = psycopg.connect(db_url)
    holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    holder.execute("SELECT count(*) FROM events")
    detacher = psycopg.connect(db_url, autocommit=True)
    pid = detacher.info.backend_pid
    errors: list[BaseException] = []

    def detach() -> None:
        try:
            detacher.execute("ALTER TABLE events DETACH PARTITION events_p2 CONCURRENTLY")
        except psycopg.Error as exc:
            errors.append(exc)

    thread = threading.Thread(target=detach)
    thread.start()
    for _ in range(100):
        if attached(conn, "events_p2") == [("events", True)]:
            break
        time.sleep(0.05)
    time.sleep(0.2)
    conn.execute("SELECT pg_cancel_backend(%s)", (pid,))
    thread.join(10)
    holder.rollback()
    holder.close()
    detacher.close()
    assert errors and attached(conn, "events_p2") == [("events", True)]  # pending
    notes: list[str] = []
    api.migrate(settings, notify=notes.append)
    assert any("already done by an earlier run" in n for n in notes), notes
    assert attached(conn, "events_p2") == []
    service.abort(settings)
    assert attached(conn, "events_p2") == [("events", False)]


def test_detach_partition_names_the_partitions_when_it_is_not_one(tmp_path: Path, db_url: str, conn: Conn) -> None:
    from pgshift.errors import MigrationSourceError

    settings = project(tmp_path, db_url, setup_sql(), [
        {"detach_partition": {"table": "events", "partition": "events_p7a"}}])
    with pytest.raises(MigrationSourceError, match=r"'events_p7a' is not a partition of public\.events \(its "
                       r'partitions: public\."Events P6 ""q""", public\.events_p0, .*public\.events_p7\)'):
        api.migrate(settings)


def test_add_unique_on_a_partitioned_table_is_refused_and_points_to_create_index(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    from pgshift.errors import MigrationSourceError

    settings = project(tmp_path, db_url, setup_sql(), [
        {"add_unique": {"table": "events", "name": "events_note_key", "columns": ["note", "k"]}}])
    before = snapshot(conn)
    with pytest.raises(MigrationSourceError, match=r"public\.events is partitioned: PostgreSQL cannot add a") as e:
        api.migrate(settings)
    assert "create_index with unique: true" in (e.value.hint or "")
    assert snapshot(conn) == before


def test_each_partition_starts_at_the_batch_size_the_one_before_reached(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    from pgshift.runner.backfill import BackfillOptions, BackfillSpec, Progress

    settings = project(tmp_path, db_url, setup_sql(), [{"sql": {"up": "SELECT 1"}}])
    seen: list[Progress] = []
    api.backfill(settings, BackfillSpec("events", "note = upper(note)", "note <> upper(note)", job="upper"),
                 BackfillOptions(initial_batch=100, min_batch=100, max_lag_s=None), progress=seen.append)
    firsts = [next(p for p in seen if p.table == table) for table in dict.fromkeys(p.table for p in seen)]
    assert len(firsts) == 9
    # The first partition starts at 100 rows (next: at most 150); the later ones where the one before ended.
    assert firsts[0].batch_size <= 150 and all(p.batch_size > 150 for p in firsts[1:]), firsts


def test_the_backfill_of_a_new_column_walks_the_key_index_not_a_scan_per_batch(db_url: str, conn: Conn) -> None:
    """A column just added has no statistics: the planner took `new IS NULL` for rare and answered each
    batch's keyset lookup with a full scan and a sort (a backfill at a fifth of one UPDATE's rate)."""
    import time

    from pgshift.db.history import History
    from pgshift.runner.backfill import Backfiller, BackfillOptions, BackfillSpec

    conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, v text); INSERT INTO t SELECT g, 'x' FROM "
                 "generate_series(1, 20000) g")
    conn.execute("ANALYZE t")
    conn.execute("ALTER TABLE t ADD COLUMN w text")
    time.sleep(1.5)
    conn.execute("SELECT pg_stat_clear_snapshot()")
    scans = conn.execute("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 't'").fetchone()
    with psycopg.connect(db_url, autocommit=True) as runner:
        History(runner, "pgshift").ensure()
        done = Backfiller(runner, "pgshift", BackfillSpec("t", "w = v", "w IS NULL"),
                          BackfillOptions(initial_batch=500, max_batch=500, count_total=False, max_lag_s=None)).run()
    assert done.rows == 20000 and done.batches >= 40
    time.sleep(1.5)  # the backfill's session has ended: its statistics are flushed
    conn.execute("SELECT pg_stat_clear_snapshot()")
    assert conn.execute("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 't'").fetchone() == scans


def test_contract_drops_the_sync_trigger_without_deadlocking_a_query_that_locked_the_parent_first(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    """Found by the 10M partitioned bench: DROP TRIGGER on a partitioned table locked every partition and then
    waited to upgrade its lock on the parent, while a query holding the parent (as planning does) went on to
    read a partition: a deadlock, which cancelled the application's query. The contract locks the parent first."""
    # A lock_timeout longer than the reader's transaction, so the contract queues behind it at once.
    settings = project(tmp_path, db_url, setup_sql(), [PARTITIONED_OPS["rename_column"]], lock_timeout="20s")
    api.migrate(settings)
    errors: list[BaseException] = []
    with psycopg.connect(db_url) as app:
        app.execute("SET deadlock_timeout = '10ms'")  # the application's wait runs the deadlock check
        app.commit()
        app.execute("LOCK TABLE ONLY events IN ACCESS SHARE MODE")

        def run_contract() -> None:
            try:
                service.contract(settings)
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        worker = threading.Thread(target=run_contract)
        worker.start()
        waiting = "SELECT count(*) FROM pg_locks WHERE relation = 'events'::regclass AND NOT granted"
        deadline = time.monotonic() + 20
        while conn.execute(waiting).fetchone() == (0,) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert conn.execute(waiting).fetchone() == (1,), "the contract never queued for the parent"
        # Queued behind this transaction, the contract must hold no lock on a partition yet.
        assert app.execute("SELECT count(*) FROM events_p0").fetchone() == (699,)
        app.commit()
        worker.join(30)
    assert not worker.is_alive() and errors == []
    assert api.status(settings).expanded == {}
