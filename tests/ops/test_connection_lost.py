"""A connection lost during an operations phase (expand, its backfill, contract, abort) is reported as the
SQL runner reports one (ConnectionFailed, exit 4) naming the migration and the step, and the command its
hint names resumes the phase and finishes it (issue #12)."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgshift.embedded import EmbeddedCluster
from tests.helpers import run_pgshift, small_cluster, start_pgshift, write_migration
from tests.ops.helpers import write_project
from tests.runner.test_crash_and_concurrency import _wait_for_backend_exit

Conn = psycopg.Connection[tuple[object, ...]]

# nap(marker) sleeps only while the marker table exists, so the command the hint names goes straight through.
INIT = """
CREATE TABLE t (id int PRIMARY KEY, note text);
INSERT INTO t SELECT g FROM generate_series(1, 300) g;
CREATE FUNCTION nap(marker text) RETURNS int LANGUAGE plpgsql AS
$$ BEGIN IF to_regclass(marker) IS NOT NULL THEN PERFORM pg_sleep(60); END IF; RETURN 1; END $$;
CREATE FUNCTION slow_note(i int) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN IF i = 250 THEN PERFORM nap('public.nap_in_fill'); END IF; RETURN 'n' || i; END $$;
"""
OPS = """backfill_batch_size: 100
operations:
  - sql: {up: "CREATE TABLE before_nap ()", down: "DROP TABLE before_nap"}
  - set_not_null: {table: t, column: note, up: "slow_note(id)"}
  - sql: {up: "SELECT nap('public.nap_in_step')", contract: "SELECT nap('public.nap_in_step')",
          down: "SELECT nap('public.nap_in_step')"}
  - add_check: {table: t, name: napping, check: "nap('public.nap_in_check') = 1"}
"""


def _hint_command(stderr: str) -> list[str]:
    """The first backquoted `pgshift ...` command of the printed hint."""
    hint = " ".join(stderr.split()).split("Hint:", 1)[1]
    found = re.search(r"`pgshift ([^`]+)`", hint)
    assert found, stderr
    return found.group(1).split()


def _napping(conn: Conn, timeout: float = 30) -> int:
    """The pid of the session sleeping in nap() (not one planning the statement that will)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event = 'PgSleep' AND pid <> pg_backend_pid()").fetchone()
        if row:
            return int(str(row[0]))
        time.sleep(0.05)
    raise AssertionError(f"no session slept in nap() within {timeout}s")


def _state(conn: Conn) -> tuple[object, ...] | None:
    return conn.execute("SELECT phase, steps_done FROM pgshift.ops_state WHERE version = '2'").fetchone()


@pytest.mark.parametrize(("phase", "command", "marker", "where", "finished"), [
    ("expand", ["migrate"], "nap_in_step", "expand step 3/5: sql #2 up", ("expanded", 5)),
    ("backfill", ["migrate"], "nap_in_fill", "expand step 5/5: backfill", ("expanded", 5)),
    ("contract", ["contract"], "nap_in_step", "contract step 4/5: sql #2 contract", ("contracted", 5)),
    # Within the validations: the contract could still be aborted, but nothing can be written to say so.
    ("validation", ["contract"], "nap_in_check", "contract step 2/5: validate napping", ("contracted", 5)),
    ("abort", ["abort"], "nap_in_step", "abort step 2/4: sql #2 down", ("aborted", 4)),
])
def test_a_connection_lost_in_a_phase_step_exits_4_naming_the_step_and_the_hint_resumes_it(
        tmp_path: Path, db_url: str, conn: Conn, phase: str, command: list[str], marker: str, where: str,
        finished: tuple[object, ...]) -> None:
    write_project(tmp_path, {})
    write_migration(tmp_path / "migrations", "1", "init", INIT)
    (tmp_path / "migrations" / "2_fill.ops.yaml").write_text(OPS)
    if phase in ("contract", "validation", "abort"):
        done = run_pgshift(["migrate"], cwd=tmp_path, url=db_url)
        assert done.returncode == 0, done.stderr
    else:
        done = run_pgshift(["migrate", "--to", "1"], cwd=tmp_path, url=db_url)
        assert done.returncode == 0, done.stderr
    conn.execute(f"CREATE TABLE {marker} ()")

    proc = start_pgshift(command, cwd=tmp_path, url=db_url)
    pid = _napping(conn)
    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    _out, err = proc.communicate(timeout=60)
    _wait_for_backend_exit(conn, pid)
    flat = " ".join(err.split())
    assert proc.returncode == 4, err
    assert "connection to the server was lost during" in flat and "2 fill" in flat, err
    assert where in flat, err
    assert "the connection is closed" not in flat and "Traceback" not in err, err

    conn.execute(f"DROP TABLE {marker}")
    rerun = run_pgshift(_hint_command(err), cwd=tmp_path, url=db_url)
    assert rerun.returncode == 0, rerun.stderr
    assert _state(conn) == finished, rerun.stderr
    if phase == "expand":
        assert "resuming expand of" in rerun.stderr and "at step 3 of 5" in " ".join(rerun.stderr.split())
    if phase == "backfill":
        assert "resuming expand of" in rerun.stderr
        assert conn.execute("SELECT count(*) FROM t WHERE note IS NULL").fetchone() == (0,)


def test_a_connection_lost_in_pgshift_backfill_exits_4_and_the_same_command_resumes_it(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    write_project(tmp_path, {})
    write_migration(tmp_path / "migrations", "1", "init", INIT)
    done = run_pgshift(["migrate"], cwd=tmp_path, url=db_url)
    assert done.returncode == 0, done.stderr
    conn.execute("CREATE TABLE nap_in_fill ()")
    command = ["backfill", "--table", "t", "--set", "note = slow_note(id)", "--where", "note IS NULL",
               "--batch-size", "100", "--min-batch", "100", "--statement-timeout", "120s", "--quiet"]
    proc = start_pgshift(command, cwd=tmp_path, url=db_url)
    pid = _napping(conn)
    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    _out, err = proc.communicate(timeout=60)
    flat = " ".join(err.split())
    assert proc.returncode == 4, err
    assert "connection to the server was lost during the backfill of t" in flat, err
    assert "the same `pgshift backfill` command again (without --restart)" in flat, err
    assert "fix the cause" not in flat and "the connection is closed" not in flat, err
    filled = conn.execute("SELECT count(*) FROM t WHERE note IS NOT NULL").fetchone()
    assert filled is not None and 0 < int(str(filled[0])) < 300  # the batches before the kill are kept

    conn.execute("DROP TABLE nap_in_fill")
    rerun = run_pgshift(command, cwd=tmp_path, url=db_url)
    assert rerun.returncode == 0, rerun.stderr
    assert conn.execute("SELECT count(*) FROM t WHERE note IS NULL").fetchone() == (0,)


@pytest.fixture
def own_cluster() -> Iterator[EmbeddedCluster]:
    """A small cluster of this test's own: killing a backend makes the whole server restart."""
    with small_cluster("pgshift-crash-") as cluster:
        yield cluster


def test_a_backend_killed_outright_is_a_lost_connection_too(tmp_path: Path, own_cluster: EmbeddedCluster) -> None:
    """kill -9 of the backend: the server restarts every session and the client sees no SQLSTATE at all."""
    url = own_cluster.socket_dsn()
    write_project(tmp_path, {})
    write_migration(tmp_path / "migrations", "1", "init", INIT)
    (tmp_path / "migrations" / "2_fill.ops.yaml").write_text(OPS)
    assert run_pgshift(["migrate", "--to", "1"], cwd=tmp_path, url=url).returncode == 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE nap_in_step ()")
        proc = start_pgshift(["migrate"], cwd=tmp_path, url=url)
        os.kill(_napping(conn), signal.SIGKILL)
    _out, err = proc.communicate(timeout=60)
    flat = " ".join(err.split())
    assert proc.returncode == 4, err
    assert "the connection to the server was lost during 2 fill at expand step 3/5: sql #2 up" in flat, err
    assert "SQLSTATE" not in flat.split("Hint:")[0].split("sql #2 up:")[1], err  # there was none to report

    deadline = time.monotonic() + 60
    while True:  # crash recovery
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DROP TABLE nap_in_step")
            break
        except psycopg.OperationalError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    rerun = run_pgshift(_hint_command(err), cwd=tmp_path, url=url)
    assert rerun.returncode == 0, rerun.stderr
    with psycopg.connect(url, autocommit=True) as conn:
        assert _state(conn) == ("expanded", 5)
