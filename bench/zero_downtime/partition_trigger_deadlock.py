"""Repro: the contract's DROP TRIGGER on a partitioned table deadlocks with the application's reads.

    .venv/bin/python bench/zero_downtime/partition_trigger_deadlock.py [--deadlock-timeout 10ms] [--lock-parent-first]

Found by the zero-downtime bench at 10,000,000 rows in 8 partitions (docs/benchmarks.md): one read of the
application failed with 40P01 at the rename's contract. ``DROP TRIGGER ... ON trades`` (pgshift.ops.sync.drop_sync,
the contract's first statement) locks ``trades`` ACCESS SHARE, drops the partitions' clones of the trigger (ACCESS
EXCLUSIVE on each partition) and only then upgrades to ACCESS EXCLUSIVE on ``trades``. A query plans against
``trades`` first (ACCESS SHARE) and then locks the partition it reads: the two wait for each other. With the
server's deadlock_timeout shorter than pgshift's lock_timeout (50 ms), the application's query can be the one
cancelled; with the default 1 s, pgshift's lock_timeout ends the wait first and it retries.

Here an embedded cluster, ``trades`` in 8 partitions of 1,000 rows, the bench's rename_column expanded; then the
contract runs while the application reads in transactions younger than lock_timeout (so pgshift queues instead of
holding off). ``--lock-parent-first`` puts ``LOCK TABLE trades IN ACCESS EXCLUSIVE MODE`` (parent, then its
partitions) before the DROP TRIGGER, the candidate fix: no failed read. pgshift does that itself since
f77316a (pgshift.ops.plan.Plan.drop_sync): without the flag, 0 failed reads in 2 runs after it, 5 in 6 before.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import pgshift.ops.plan
import pgshift.ops.sync
from pgshift import api
from pgshift.config import Settings
from pgshift.embedded import EmbeddedCluster
from pgshift.ops import service

sys.path.insert(0, str(Path(__file__).parent))
import run as zd


def lock_parent_first() -> None:
    original = pgshift.ops.sync.drop_sync

    def patched(table: sql.Identifier, function: sql.Identifier, trigger: sql.Identifier) -> list[sql.Composable]:
        return [sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table), *original(table, function, trigger)]

    pgshift.ops.plan.drop_sync = patched  # type: ignore[attr-defined]  # plan.py imported the name itself


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--deadlock-timeout", default="10ms")
    parser.add_argument("--lock-parent-first", action="store_true")
    args = parser.parse_args()
    if args.lock_parent_first:
        lock_parent_first()
    cluster = EmbeddedCluster(Path(tempfile.mkdtemp(prefix="pgshift-deadlock-")))
    cluster.start(settings={"deadlock_timeout": args.deadlock_timeout, "log_lock_waits": "on"})
    try:
        with psycopg.connect(cluster.socket_dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE repro")
        url = zd.with_dbname(cluster.socket_dsn(), "repro")
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in zd.setup_sql(8000, 8).split(";"):
                if statement.strip():
                    conn.execute(statement.encode())
        work = cluster.root / "work"
        (work / "migrations").mkdir(parents=True)
        ops = zd.slugs(zd.cases_for(8))["rename_column"].ops
        (work / "migrations" / "1_change.ops.yaml").write_text(f"version_schema: app_v2\noperations:\n{ops}")
        settings = Settings(database_url=url, base_dir=work, migrations_dir="migrations")
        api.migrate(settings)

        stop = threading.Event()
        results: dict[str, Any] = {"ok": 0, "failed": []}

        def application() -> None:
            with psycopg.connect(url, application_name="app") as app:
                while not stop.is_set():
                    try:
                        app.execute("LOCK TABLE ONLY trades IN ACCESS SHARE MODE")  # what planning takes
                        time.sleep(0.03)
                        app.execute("SELECT id FROM trades WHERE id = %s", [7999]).fetchall()  # trades_p7
                        app.commit()
                        results["ok"] += 1
                    except psycopg.Error as exc:
                        app.rollback()
                        results["failed"].append(f"{exc.sqlstate} {exc.diag.message_primary}")

        reader = threading.Thread(target=application)
        reader.start()
        time.sleep(0.2)
        retries = service.contract(settings).lock_retries
        stop.set()
        reader.join()
        print(f"deadlock_timeout {args.deadlock_timeout}, lock parent first: {args.lock_parent_first}; "
              f"contract: {retries} lock retries; application reads: {results['ok']} ok, "
              f"failed: {results['failed'] or 'none'}")
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
