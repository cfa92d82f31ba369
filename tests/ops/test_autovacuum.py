"""A real autovacuum in the way of contract. PostgreSQL cancels an autovacuum only for a lock request
that has waited deadlock_timeout (1s), far longer than the ops lock_timeout (50ms), so without help
every attempt times out behind it. A cluster of the test's own runs autovacuum every second, and the
table's cost settings make one crawl, so it reliably holds its lock while contract runs."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from pgshift.embedded import EmbeddedCluster
from pgshift.errors import LockTimeoutExhausted
from pgshift.ops import service
from tests.ops.helpers import make_project

Conn = psycopg.Connection[Any]
INIT = """
CREATE TABLE big (id int PRIMARY KEY, qty int, note text) WITH (autovacuum_enabled = false);
INSERT INTO big SELECT g, g, 'x' FROM generate_series(1, 200000) g;
UPDATE big SET qty = qty + 1;  -- 200k dead rows to vacuum
"""
OPS = """lock_timeout: 50ms
lock_retries: 4
operations:
  - add_check: {table: big, name: qty_positive, check: "qty > 0"}
  - drop_column: {table: big, column: note}
"""
CRAWL = ("ALTER TABLE big SET (autovacuum_enabled = true, autovacuum_vacuum_cost_delay = 100, "
         "autovacuum_vacuum_cost_limit = 1, autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0, "
         "autovacuum_analyze_threshold = 2000000000)")


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedCluster]:
    root = Path(tempfile.mkdtemp(prefix="pgshift-test-autovacuum-"))
    own = EmbeddedCluster(root)
    # Each test leaves its crawling worker behind (a cancelled one restarts): enough workers for all of them.
    own.start(tcp=False, settings={"autovacuum_naptime": "1s", "autovacuum_max_workers": "8"})
    try:
        yield own
    finally:
        own.destroy()


def _url(cluster: EmbeddedCluster, db: str, user: str | None = None) -> str:
    params = conninfo.conninfo_to_dict(cluster.socket_dsn(db))
    if user:
        params["user"] = user
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def _vacuums_holding(conn: Conn, tables: list[str]) -> list[int]:
    """The pids of the autovacuum workers holding a lock on each of ``tables``, once each does (in that order)."""
    until, found = time.monotonic() + 40, dict[str, int]()
    while len(found) < len(tables):
        assert time.monotonic() < until, f"no autovacuum on each of {tables} within 40s: {found}"
        for table in tables:
            row = conn.execute("SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
                               "WHERE a.backend_type = 'autovacuum worker' AND l.relation = %s::regclass "
                               "AND l.granted", (table,)).fetchone()
            if row:
                found[table] = int(row[0])
        time.sleep(0.05)
    return [found[t] for t in tables]


def _vacuum_holding_big(conn: Conn) -> int:
    """Start the crawling autovacuum on big and return its pid once it holds its lock."""
    conn.execute(CRAWL)
    [pid] = _vacuums_holding(conn, ["big"])
    return pid


# Without the check, only the strong lock of the step dropping the column: the path that waits for
# old transactions without queuing (an autovacuum's "transaction" is as old as the vacuum).
DROP_ONLY = "lock_timeout: 50ms\nlock_retries: 4\noperations:\n  - drop_column: {table: big, column: note}\n"


def _expanded(cluster: EmbeddedCluster, tmp_path: Path, db: str, user: str | None = None, ops: str = OPS) -> Any:
    settings = make_project(tmp_path, _url(cluster, db, user), {"001_init.sql": INIT, "002_ops.ops.yaml": ops})
    from pgshift import api

    api.migrate(settings)
    return settings


@pytest.mark.parametrize("ops", [OPS, DROP_ONLY], ids=["validate-then-drop", "drop-only"])
def test_contract_cancels_an_autovacuum_holding_its_lock(cluster: EmbeddedCluster, tmp_path: Path, ops: str) -> None:
    db = f"av_super_{len(ops)}"
    with psycopg.connect(cluster.socket_dsn(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {db}")
    settings = _expanded(cluster, tmp_path, db, ops=ops)
    with psycopg.connect(_url(cluster, db), autocommit=True) as conn:
        pid = _vacuum_holding_big(conn)
        notes: list[str] = []
        started = time.monotonic()
        result = service.contract(settings, notify=notes.append)
        took = time.monotonic() - started
        assert pid in result.autovacuums_cancelled, notes
        assert any(f"cancelled autovacuum pid {pid}" in n for n in notes)
        assert took < 3, (took, notes)  # not the whole retry budget spent waiting behind it
        assert conn.execute("SELECT bool_and(convalidated) FROM pg_constraint WHERE conrelid = 'big'::regclass"
                            ).fetchone() == (True,)
        assert conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'big'::regclass AND attname = 'note' "
                            "AND NOT attisdropped").fetchone() == (0,)
        logged = conn.execute("SELECT count(*) FROM pgshift.events WHERE event = 'autovacuum-cancelled'").fetchone()
        assert logged is not None and logged[0] >= 1


def test_a_role_that_may_not_cancel_it_is_told_which_pid_and_why(cluster: EmbeddedCluster, tmp_path: Path) -> None:
    with psycopg.connect(cluster.socket_dsn(), autocommit=True) as admin:
        admin.execute("CREATE ROLE av_owner LOGIN")
        admin.execute("CREATE DATABASE av_plain OWNER av_owner")
        admin.execute("ALTER DATABASE av_plain SET deadlock_timeout = '2s'")  # the server's value is quoted
    settings = _expanded(cluster, tmp_path, "av_plain", user="av_owner")
    with psycopg.connect(_url(cluster, "av_plain"), autocommit=True) as conn:
        pid = _vacuum_holding_big(conn)
        notes: list[str] = []
        with pytest.raises(LockTimeoutExhausted) as failure:
            service.contract(settings, notify=notes.append)
        message = str(failure.value)
        assert f"pid {pid} is an autovacuum worker" in message, message
        assert "deadlock_timeout (2s)" in message and "lock_timeout 50ms" in message
        assert any(f"pid {pid} is an autovacuum worker" in n for n in notes), notes  # told while it retries
        assert "Role 'av_owner' may not cancel it" in message
        assert f"SELECT pg_cancel_backend({pid})" in message
        assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == (1,)
        # The hint's way out works: a superuser cancels it, and contract (still expanded) goes through.
        conn.execute("SELECT pg_cancel_backend(%s)", (pid,))
        conn.execute("ALTER TABLE big SET (autovacuum_enabled = false)")
        time.sleep(0.2)
        service.contract(settings)


def test_an_autovacuum_to_prevent_wraparound_is_left_alone_and_named(cluster: EmbeddedCluster,
                                                                      tmp_path: Path) -> None:
    """Cancelling one would only postpone freezing a table close to wraparound: pgshift must not."""
    with psycopg.connect(cluster.socket_dsn(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE av_wrap")
    settings = _expanded(cluster, tmp_path, "av_wrap", ops=DROP_ONLY)
    with psycopg.connect(_url(cluster, "av_wrap"), autocommit=True) as conn:
        # Age the table past the lowest autovacuum_freeze_max_age (100000): 110000 subtransaction xids.
        conn.execute("CREATE TABLE burn (x int)")
        conn.execute("DO $$ BEGIN FOR i IN 1..110000 LOOP BEGIN INSERT INTO burn VALUES (i); "
                     "EXCEPTION WHEN others THEN NULL; END; END LOOP; END $$")
        conn.execute(CRAWL.replace("autovacuum_vacuum_threshold = 0", "autovacuum_freeze_max_age = 100000"))
        pid = _vacuum_holding_big(conn)
        query = conn.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        assert query is not None and "(to prevent wraparound)" in query[0]
        with pytest.raises(LockTimeoutExhausted) as failure:
            service.contract(settings)
        message = str(failure.value)
        assert f"pid {pid} is an autovacuum to prevent transaction ID wraparound" in message, message
        assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM pgshift.events WHERE event = 'autovacuum-cancelled'").fetchone() == (
            0,)


def test_an_autovacuum_behind_an_older_reader_is_cancelled_too(cluster: EmbeddedCluster, tmp_path: Path) -> None:
    """Every autovacuum among the sessions in the step's way is cancelled, not only those listed before the
    first other session: here an older reader, listed first and never released, makes the contract fail,
    and the autovacuum behind it is still cancelled (the reader alone is left to name)."""
    with psycopg.connect(cluster.socket_dsn(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE av_reader")
    settings = _expanded(cluster, tmp_path, "av_reader", ops=DROP_ONLY)
    with psycopg.connect(_url(cluster, "av_reader")) as reader, \
            psycopg.connect(_url(cluster, "av_reader"), autocommit=True) as conn:
        reader.execute("SET application_name = 'old_reader'")
        reader.execute("SELECT count(*) FROM big")  # ACCESS SHARE on big, in a transaction older than the vacuum
        pid = _vacuum_holding_big(conn)
        notes: list[str] = []
        with pytest.raises(LockTimeoutExhausted) as failure:
            service.contract(settings, notify=notes.append)
        assert any(f"cancelled autovacuum pid {pid}" in n for n in notes), notes
        assert f"pid {reader.info.backend_pid} (old_reader" in str(failure.value), failure.value
        reader.rollback()


PARTITIONED_INIT = """
CREATE TABLE big (id int, qty int, note text) PARTITION BY RANGE (id);
CREATE TABLE big_p1 PARTITION OF big FOR VALUES FROM (1) TO (100001) WITH (autovacuum_enabled = false);
CREATE TABLE big_p2 PARTITION OF big FOR VALUES FROM (100001) TO (MAXVALUE) WITH (autovacuum_enabled = false);
INSERT INTO big SELECT g, g, 'x' FROM generate_series(1, 200000) g;
UPDATE big SET qty = qty + 1;  -- dead rows in both partitions
"""


def test_contract_cancels_an_autovacuum_of_a_partition_of_its_table(cluster: EmbeddedCluster, tmp_path: Path) -> None:
    """Autovacuum never processes a partitioned parent, only its partitions; a VALIDATE or DROP COLUMN on the
    parent locks every partition, so the worker in the way holds a partition's lock, not the parent's. At 10M
    rows in 8 partitions the contract after a rename's backfill spent all 31 attempts behind such workers and
    named no blocker ("none now")."""
    with psycopg.connect(cluster.socket_dsn(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE av_parts")
    settings = make_project(tmp_path, _url(cluster, "av_parts"), {"001_init.sql": PARTITIONED_INIT,
                                                                    "002_ops.ops.yaml": OPS})
    from pgshift import api

    api.migrate(settings)
    with psycopg.connect(_url(cluster, "av_parts"), autocommit=True) as conn:
        conn.execute(CRAWL.replace("big", "big_p2"))
        [pid] = _vacuums_holding(conn, ["big_p2"])
        notes: list[str] = []
        result = service.contract(settings, notify=notes.append)
        assert pid in result.autovacuums_cancelled, notes
        assert conn.execute("SELECT bool_and(convalidated) FROM pg_constraint WHERE conrelid = 'big'::regclass"
                            ).fetchone() == (True,)
        assert conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'big_p2'::regclass "
                            "AND attname = 'note' AND NOT attisdropped").fetchone() == (0,)


def test_a_role_that_may_not_cancel_them_is_told_of_every_autovacuum_in_the_way(
        cluster: EmbeddedCluster, tmp_path: Path) -> None:
    """Two partitions vacuumed at once, neither cancellable by the role: the message explains both."""
    with psycopg.connect(cluster.socket_dsn(), autocommit=True) as admin:
        admin.execute("CREATE ROLE av_parts_owner LOGIN")
        admin.execute("CREATE DATABASE av_parts_plain OWNER av_parts_owner")
    settings = make_project(tmp_path, _url(cluster, "av_parts_plain", "av_parts_owner"), {
        "001_init.sql": PARTITIONED_INIT, "002_ops.ops.yaml": DROP_ONLY})
    from pgshift import api

    api.migrate(settings)
    with psycopg.connect(_url(cluster, "av_parts_plain"), autocommit=True) as conn:
        conn.execute(CRAWL.replace("big", "big_p1"))
        conn.execute(CRAWL.replace("big", "big_p2"))
        pids = _vacuums_holding(conn, ["big_p1", "big_p2"])
        with pytest.raises(LockTimeoutExhausted) as failure:
            service.contract(settings)
        message = str(failure.value)
        for pid in pids:
            assert f"pid {pid} is an autovacuum worker" in message, message
        conn.execute("ALTER TABLE big_p1 SET (autovacuum_enabled = false)")
        conn.execute("ALTER TABLE big_p2 SET (autovacuum_enabled = false)")
        conn.execute("SELECT pg_cancel_backend(pid) FROM unnest(%s::int[]) pid", (pids,))


def test_an_autovacuum_after_one_to_prevent_wraparound_is_still_cancelled(cluster: EmbeddedCluster,
                                                                           tmp_path: Path) -> None:
    """The wraparound vacuum of one partition (older, listed first) is left alone; the ordinary one of the other
    partition behind it is still cancelled."""
    with psycopg.connect(cluster.socket_dsn(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE av_parts_wrap")
    settings = make_project(tmp_path, _url(cluster, "av_parts_wrap"), {
        "001_init.sql": PARTITIONED_INIT, "002_ops.ops.yaml": DROP_ONLY})
    from pgshift import api

    api.migrate(settings)
    with psycopg.connect(_url(cluster, "av_parts_wrap"), autocommit=True) as conn:
        conn.execute("CREATE TABLE burn (x int)")  # 110000 subtransaction xids: past the lowest freeze_max_age
        conn.execute("DO $$ BEGIN FOR i IN 1..110000 LOOP BEGIN INSERT INTO burn VALUES (i); "
                     "EXCEPTION WHEN others THEN NULL; END; END LOOP; END $$")
        conn.execute(CRAWL.replace("big", "big_p1").replace("autovacuum_vacuum_threshold = 0",
                                                            "autovacuum_freeze_max_age = 100000"))
        [wrap] = _vacuums_holding(conn, ["big_p1"])
        conn.execute(CRAWL.replace("big", "big_p2"))
        [plain] = _vacuums_holding(conn, ["big_p2"])
        notes: list[str] = []
        with pytest.raises(LockTimeoutExhausted) as failure:
            service.contract(settings, notify=notes.append)
        assert f"pid {wrap} is an autovacuum to prevent transaction ID wraparound" in str(failure.value)
        assert any(f"cancelled autovacuum pid {plain}" in n for n in notes), notes
        assert not any(f"cancelled autovacuum pid {wrap}" in n for n in notes), notes
        conn.execute("ALTER TABLE big_p2 SET (autovacuum_enabled = false)")


def test_after_a_cancel_the_step_waits_until_the_workers_locks_are_gone_at_most_two_seconds(db_url: str) -> None:
    """Autovacuums._wait_until_gone, with a session standing in for the cancelled worker (it watches the pid's
    relation locks in pg_locks): it returns as soon as they are released, and gives up after 2 s."""
    from pgshift.runner.blockers import Autovacuums

    with psycopg.connect(db_url, autocommit=True) as conn, psycopg.connect(db_url) as holder:
        conn.execute("CREATE TABLE held (id int)")
        holder.execute("LOCK TABLE held IN SHARE UPDATE EXCLUSIVE MODE")
        watch = Autovacuums(conn, notify=lambda _m: None)
        started = time.monotonic()
        watch._wait_until_gone(holder.info.backend_pid)  # never released: the whole default wait
        assert 1.9 <= time.monotonic() - started < 10  # the upper bound only catches a wait that never ends
        released = threading.Timer(0.3, holder.rollback)
        started = time.monotonic()
        released.start()
        watch._wait_until_gone(holder.info.backend_pid)
        took = time.monotonic() - started
        released.join()
        assert 0.3 <= took < 1.9, took  # returned once the locks were gone, before the 2 s wait ran out
