"""`pgshift migrate|status|check --targets FILE` on databases of two real clusters."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from pgshift import api
from pgshift.config import Settings, load_settings
from tests.fleet.conftest import Fleet, Member
from tests.fleet.helpers import SLEEP_IF_MARKED, kill_when_sleeping, mark, password
from tests.helpers import PGSHIFT, run_pgshift, start_pgshift, write_migration


def _project(tmp_path: Path, targets: str = "") -> Path:
    folder = tmp_path / "migrations"
    write_migration(folder, "1", "items", "CREATE TABLE items (id bigint PRIMARY KEY, name text);")
    write_migration(folder, "2", "items_name", "CREATE INDEX items_name ON items (name);")
    write_migration(folder, "3", "orders", "CREATE TABLE orders (id bigint PRIMARY KEY, item bigint);")
    (tmp_path / "pgshift.toml").write_text(f'migrations_dir = "migrations"\n[targets]\n{targets}')
    return tmp_path


def _applied(member: Member) -> list[str]:
    with member.connect() as conn:
        if conn.execute("SELECT to_regclass('pgshift.migrations')").fetchone() == (None,):
            return []
        rows = conn.execute("SELECT version FROM pgshift.migrations WHERE status = 'applied' ORDER BY version")
        return [str(r[0]) for r in rows.fetchall()]


def _conflict(member: Member) -> None:
    """A table in the way of migration 1: this target fails."""
    with member.connect() as conn:
        conn.execute("CREATE TABLE items (legacy int)")


def test_twenty_two_databases_on_two_clusters_one_fails_then_a_rerun_finishes(tmp_path: Path, fleet: Fleet) -> None:
    project = _project(tmp_path, "parallel = 4\nmax_failures = 5\n")
    members = fleet.create(22)
    assert len({m.server.admin_url for m in members}) == 2
    bad = members[7]
    _conflict(bad)
    targets = fleet.write(project / "targets.txt", members)

    run = run_pgshift(["migrate", "--targets", str(targets), "--json"], cwd=project)
    assert run.returncode == 31, run.stderr
    report = json.loads(run.stdout)
    by_db = {t["target"]: t for t in report["targets"]}
    assert len(by_db) == 22
    assert by_db[bad.dbname]["result"] == "failed"
    assert 'relation "items" already exists' in by_db[bad.dbname]["error"]
    assert by_db[bad.dbname]["error_code"] == "migration-failed"
    assert report["counts"] == {"applied": 21, "failed": 1}
    assert all(t["applied"] == 3 for t in report["targets"] if t["target"] != bad.dbname)
    assert all(_applied(m) == ["1", "2", "3"] for m in members if m is not bad)
    assert _applied(bad) == []
    assert '"code": "fleet-failed"' in run.stderr and "1 of 22 target(s) failed" in run.stderr
    for m in members:  # URLs carry passwords; neither output shows one
        assert password(m.url) not in run.stdout + run.stderr

    with bad.connect() as conn:
        conn.execute("DROP TABLE items")
    rerun = run_pgshift(["migrate", "--targets", str(targets)], cwd=project)
    assert rerun.returncode == 0, rerun.stderr
    assert "1 applied, 21 up to date" in rerun.stdout
    assert _applied(bad) == ["1", "2", "3"]
    for m in members:
        assert password(m.url) not in rerun.stdout + rerun.stderr

    status = run_pgshift(["status", "--targets", str(targets), "--json"], cwd=project)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["counts"] == {"up to date": 22}


def _settings(project: Path) -> Settings:
    return load_settings(cwd=project, environ={})


def test_a_failed_canary_stops_the_rollout_before_any_other_target(tmp_path: Path, fleet: Fleet) -> None:
    members = fleet.create(6)
    canary = members[4]
    _conflict(canary)
    project = _project(tmp_path, f'canary = ["{canary.dbname}"]\nparallel = 3\nmax_failures = 10\n')
    targets = fleet.write(project / "targets.txt", members)

    report = api.migrate_targets(_settings(project), targets)
    results = {r.target: r for r in report.results}
    assert results[canary.dbname].result == "failed" and results[canary.dbname].canary
    assert [r.result for r in report.results if r.target != canary.dbname] == ["not started"] * 5
    assert report.stopped == f"canary {canary.dbname} failed"
    assert all(_applied(m) == [] for m in members)
    with pytest.raises(api.FleetFailed, match=r"1 of 6 target\(s\) failed .*5 not started .canary"):
        report.raise_for_failures("pgshift migrate --targets targets.txt")


def test_a_passing_canary_count_goes_first_then_the_rest(tmp_path: Path, fleet: Fleet) -> None:
    members = fleet.create(4)
    project = _project(tmp_path, "canary = 1\nparallel = 3\n")
    order: list[str] = []

    class Record(api.FleetEvents):
        def started(self, target: api.Target) -> None:
            order.append(target.name)

        def finished(self, target: api.Target, result: api.TargetResult) -> None:
            order.append(f"{target.name} {result.result}")

    report = api.migrate_targets(_settings(project), fleet.write(project / "t.txt", members), events=Record())
    first = members[0].dbname
    assert order[:2] == [first, f"{first} applied"]  # nothing else started while the canary ran
    assert report.ok and [r.canary for r in report.results] == [True, False, False, False]


def test_the_first_failure_stops_new_targets_and_max_failures_tolerates_some(tmp_path: Path, fleet: Fleet) -> None:
    members = fleet.create(6)
    _conflict(members[1])
    _conflict(members[3])
    project = _project(tmp_path, "parallel = 1\n")
    targets = fleet.write(project / "targets.txt", members)

    report = api.migrate_targets(_settings(project), targets)
    assert [r.result for r in report.results] == ["applied", "failed"] + ["not started"] * 4
    assert report.stopped == "1 target(s) failed, more than targets.max_failures = 0"

    (project / "pgshift.toml").write_text('migrations_dir = "migrations"\n[targets]\nmax_failures = 1\n')
    report = api.migrate_targets(_settings(project), targets)
    assert [r.result for r in report.results] == ["up to date", "failed", "applied", "failed", "not started",
                                                 "not started"]
    assert _applied(members[4]) == []


def test_kill_9_of_the_orchestrator_then_a_rerun_resumes_each_target(tmp_path: Path, fleet: Fleet) -> None:
    members = fleet.create(8)
    project = _project(tmp_path, "parallel = 2\n")
    write_migration(project / "migrations", "4", "steps", "\n".join([
        "CREATE TABLE log (n int);", "INSERT INTO log VALUES (1);", SLEEP_IF_MARKED, "INSERT INTO log VALUES (2);",
    ]), directives=("no-transaction",))
    slow = members[2:4]  # the first two finish; these two hang in migration 4; the last four never start
    mark(slow)
    targets = fleet.write(project / "targets.txt", members, named=True)

    kill_when_sleeping(start_pgshift(["migrate", "--targets", str(targets)], cwd=project, url=""), slow, timeout=60)
    for m in slow:
        with m.connect() as conn:
            assert conn.execute("SELECT status, statements_done FROM pgshift.migrations WHERE version = '4'") \
                .fetchone() == ("running", 2)
            conn.execute("DROP TABLE sleep_marker")

    status = api.status_targets(_settings(project), targets)
    assert [r.result for r in status.results] == ["up to date"] * 2 + ["interrupted"] * 2 + ["pending"] * 4

    rerun = run_pgshift(["migrate", "--targets", str(targets), "--json"], cwd=project)
    assert rerun.returncode == 0, rerun.stderr
    results = json.loads(rerun.stdout)["targets"]
    assert [(r["result"], r["applied"]) for r in results] == [("up to date", 0)] * 2 + [("applied", 1)] * 2 + \
        [("applied", 4)] * 4
    for m in members:
        assert _applied(m) == ["1", "2", "3", "4"]
        with m.connect() as conn:  # statement 2 ran once: the interrupted ones resumed at statement 3
            assert [r[0] for r in conn.execute("SELECT n FROM log ORDER BY n").fetchall()] == [1, 2]


def test_check_and_status_visit_every_target_and_name_the_unreachable_one(tmp_path: Path, fleet: Fleet) -> None:
    members = fleet.create(3)
    project = _project(tmp_path, "parallel = 2\n")
    gone = members[1]
    gone.server.drop_database(gone.dbname)
    targets = fleet.write(project / "targets.txt", members)

    status = run_pgshift(["status", "--targets", str(targets)], cwd=project, env={"COLUMNS": "300"})
    assert status.returncode == 31
    rows = {line.split("│")[1].strip(): line for line in status.stdout.splitlines() if line.count("│") > 2}
    assert "pending" in rows[members[0].dbname] and "pending" in rows[members[2].dbname]
    assert "failed" in rows[gone.dbname] and f'database "{gone.dbname}" does not exist' in rows[gone.dbname]
    assert "1 failed, 2 pending in" in status.stdout
    assert "fleet-failed" in status.stderr and "interrupted ones resume" not in status.stderr

    with (project / "pgshift.toml").open("a") as toml:
        toml.write('[backup]\npolicy = "never"\n')  # no backup needed: only the lost database fails
    check = run_pgshift(["check", "--targets", str(targets), "--json"], cwd=project)
    assert check.returncode == 1, check.stderr
    report = json.loads(check.stdout)
    assert [t["result"] for t in report["targets"]] == ["passed", "failed", "passed"]
    assert [t["pending"] for t in report["targets"]] == [3, 0, 3]
    assert password(gone.url) not in status.stdout + status.stderr + check.stdout + check.stderr


def test_names_resolved_through_the_catalog_query(tmp_path: Path, fleet: Fleet, db_url: str) -> None:
    members = fleet.create(3)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE tenants (name text, url text, active bool)")
        for i, m in enumerate(members):
            conn.execute("INSERT INTO tenants VALUES (%s, %s, %s)", (f"tenant-{i}", m.url, i != 2))
    query = "SELECT name, url FROM tenants WHERE active ORDER BY name"
    project = _project(tmp_path, f'query = "{query}"\ncatalog_url = "{db_url}"\n')
    (project / "all.txt").write_text("*\n")
    (project / "one.txt").write_text("# only this tenant\ntenant-1\n")
    (project / "gone.txt").write_text("tenant-2\n")

    report = api.migrate_targets(_settings(project), "one.txt")
    assert [(r.target, r.result) for r in report.results] == [("tenant-1", "applied")]
    report = api.migrate_targets(_settings(project), "all.txt")
    assert [(r.target, r.result) for r in report.results] == [("tenant-0", "applied"), ("tenant-1", "up to date")]
    assert _applied(members[2]) == []
    with pytest.raises(api.PgshiftError, match=r"gone.txt:1: no target named 'tenant-2'"):
        api.migrate_targets(_settings(project), "gone.txt")


def test_a_terminal_shows_live_progress_across_targets(tmp_path: Path, fleet: Fleet) -> None:
    members = fleet.create(3)
    project = _project(tmp_path, "canary = 1\nparallel = 2\n")
    write_migration(project / "migrations", "4", "slow", "SELECT pg_sleep(0.5);")
    targets = fleet.write(project / "targets.txt", members)
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGSHIFT_", "DATABASE_URL"))}
    proc = subprocess.Popen([*PGSHIFT, "migrate", "--targets", str(targets)], cwd=project, stdout=secondary,
                            stderr=secondary, env={**env, "TERM": "xterm", "COLUMNS": "200"})
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=60) == 0
    os.close(primary)
    text = seen.decode(errors="replace")
    assert "targets (1 canary first)" in text and "3/3" in text  # the overall bar
    assert f"{members[0].dbname}: applying 4 slow" in text  # a running target's latest step
    assert "3 applied in" in text  # then the summary table
    for m in members:
        assert password(m.url) not in text


def test_ctrl_c_starts_no_new_target_and_lets_the_running_one_finish(tmp_path: Path, fleet: Fleet) -> None:
    members = fleet.create(3)
    project = _project(tmp_path, "parallel = 1\n")
    write_migration(project / "migrations", "4", "slow", "SELECT pg_sleep(2);")
    targets = fleet.write(project / "targets.txt", members)
    proc = start_pgshift(["migrate", "--targets", str(targets)], cwd=project, url="")
    deadline = time.monotonic() + 60
    while not _running(members[0], "pg_sleep(2)"):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Interrupted: no target was started after Ctrl-C, and the ones running finished first" in err
    assert "run the same `pgshift migrate --targets` command again" in err
    assert _applied(members[0]) == ["1", "2", "3", "4"]  # the running target finished its migrations
    assert _applied(members[1]) == [] and _applied(members[2]) == []


def _running(member: Member, fragment: str) -> bool:
    with member.connect() as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND state = 'active' AND query LIKE %s AND pid <> pg_backend_pid()",
                           (f"%{fragment}%",)).fetchone()
        return row == (1,)


def test_migrate_url_is_not_used_for_the_targets(tmp_path: Path, fleet: Fleet) -> None:
    """migrate_url names one database; each target's deploy session connects to the target's own URL."""
    members = fleet.create(3)
    elsewhere = members[2]
    project = _project(tmp_path, "parallel = 2\n")
    with (project / "pgshift.toml").open("r+") as toml:
        text = toml.read()
        toml.seek(0)
        toml.write(f'migrate_url = "{elsewhere.url}"\n{text}')
    targets = fleet.write(project / "targets.txt", members[:2])

    report = api.migrate_targets(_settings(project), targets)
    assert [r.result for r in report.results] == ["applied", "applied"], [r.error for r in report.results]
    assert _applied(members[0]) == _applied(members[1]) == ["1", "2", "3"]
    assert _applied(elsewhere) == []
