"""`pgshift deploy --targets FILE` on databases of two real clusters: expand every target, the app
hook once, watch, contract every target; the failure policy on a partly expanded fleet; kill -9 of
the orchestrator, then --resume."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from pgshift import api
from pgshift.config import load_settings
from tests.fleet.conftest import Fleet, Member
from tests.helpers import run_pgshift, start_pgshift, write_migration

ADD_STATUS = """
schema: public
lock_timeout: 500ms
operations:
  - add_column:
      table: items
      column: {name: status, type: text, default: "'NEW'", nullable: true}
"""
SLEEP_IF_MARKED = (
    "DO $$ BEGIN IF to_regclass('public.sleep_marker') IS NOT NULL THEN PERFORM pg_sleep(60); END IF; END $$;"
)


def _project(root: Path, *, targets: str = "parallel = 4\n", deploy: str = "", slow: bool = False,
             app: str | None = None) -> Path:
    """Migrations (a table, an expand adding a column, a second table), hooks that log to hooks.log."""
    folder = root / "migrations"
    write_migration(folder, "1", "items", "CREATE TABLE items (id bigint PRIMARY KEY, name text);",
                    "DROP TABLE items;")
    (folder / "2_add_status.ops.yaml").write_text(ADD_STATUS)
    if slow:
        write_migration(folder, "3", "orders", "\n".join(["CREATE TABLE orders (id bigint PRIMARY KEY);",
                                                           SLEEP_IF_MARKED, "CREATE TABLE after_sleep ();"]),
                        "DROP TABLE after_sleep; DROP TABLE orders;", directives=("no-transaction",))
    else:
        write_migration(folder, "3", "orders", "CREATE TABLE orders (id bigint PRIMARY KEY);", "DROP TABLE orders;")
    hooks = root / "hooks.log"
    (root / "pgshift.toml").write_text(
        'migrations_dir = "migrations"\nlock_wait = "5s"\n'
        f'[backup]\npolicy = "never"\n[watch]\ninterval = "200ms"\n[targets]\n{targets}'
        f'[deploy]\napp_command = "{app or f"echo app >> {hooks}"}"\n'
        f'rollback_app_command = "echo rollback >> {hooks}"\n'
        f'app_timeout = "60s"\nwatch = "1s"\ncontract = "auto"\n{deploy}')
    return root


def _hooks(project: Path) -> list[str]:
    path = project / "hooks.log"
    return path.read_text().split() if path.exists() else []


def _state(member: Member) -> tuple[list[str], list[str], str | None]:
    """(applied versions, tables of public, the column status exists) of one target."""
    with member.connect() as conn:
        tables = [str(r[0]) for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' "
            "ORDER BY relname").fetchall()]
        if conn.execute("SELECT to_regclass('pgshift.migrations')").fetchone() == (None,):
            return [], tables, None
        applied = [str(r[0]) for r in conn.execute(
            "SELECT version FROM pgshift.migrations WHERE status = 'applied' ORDER BY version").fetchall()]
        column = conn.execute("SELECT data_type FROM information_schema.columns WHERE table_schema = 'public' "
                              "AND table_name = 'items' AND column_name = 'status'").fetchone()
        return applied, tables, None if column is None else str(column[0])


def _unfinished(member: Member) -> bool:
    with member.connect() as conn:
        if conn.execute("SELECT to_regclass('pgshift.events')").fetchone() == (None,):
            return False  # never started: no ledger
        started = conn.execute("SELECT detail->>'deploy' FROM pgshift.events WHERE event = 'deploy-started' "
                               "ORDER BY id DESC LIMIT 1").fetchone()
        if started is None:
            return False
        return conn.execute("SELECT count(*) FROM pgshift.events WHERE event = 'deploy-finished' "
                            "AND detail->>'deploy' = %s", (started[0],)).fetchone() == (0,)


def _password(url: str) -> str:
    return unquote(urlsplit(url).password or "")


def test_deploy_over_22_databases_on_two_clusters_runs_the_hook_once(tmp_path: Path, fleet: Fleet) -> None:
    project = _project(tmp_path, targets="canary = 1\nparallel = 4\n")
    members = fleet.create(22)
    assert len({m.server.admin_url for m in members}) == 2
    targets = fleet.write(project / "targets.txt", members)

    run = run_pgshift(["deploy", "--targets", str(targets), "--json", "--html", "fleet.html"], cwd=project,
                      timeout=600)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["outcome"] == "deployed" and report["counts"] == {"deployed": 22}
    assert all(t["applied"] == 3 for t in report["targets"])
    assert [t["canary"] for t in report["targets"]] == [True] + [False] * 21
    assert [s["name"] for s in report["steps"]] == ["app", "health", "watch"]
    assert report["steps"][2]["state"] == "done" and "of 2 server(s)" in report["steps"][2]["detail"]
    assert len(report["watch"]) == 2  # one watched database per server
    assert _hooks(project) == ["app"]  # once for the fleet
    for m in members:  # expanded, then contracted: the column is in public, the ledger closed
        assert _state(m) == (["1", "2", "3"], ["items", "orders"], "text")
        assert not _unfinished(m)
    page = (project / "fleet.html").read_text()
    for m in members:
        assert f"<td>{m.dbname}" in page
        assert _password(m.url) not in page + run.stdout + run.stderr
    assert "deployed" in page and "Fleet-wide steps" in page


def test_a_failing_target_rolls_back_every_target_the_deploy_touched(tmp_path: Path, fleet: Fleet) -> None:
    project = _project(tmp_path, targets="parallel = 3\nmax_failures = 0\n")
    members = fleet.create(8)
    bad = members[4]
    with bad.connect() as conn:
        conn.execute("CREATE TABLE orders (legacy int)")  # migration 3 fails on this target
    targets = fleet.write(project / "targets.txt", members)

    run = run_pgshift(["deploy", "--targets", str(targets), "--json", "--html", "failed.html"], cwd=project,
                      timeout=300)
    assert run.returncode == 32, run.stderr
    assert "fleet-deploy-failed" in run.stderr and "failed at expand" in run.stderr
    page = (project / "failed.html").read_text()  # written for a failed deploy too
    assert "class='verdict fail'>failed<" in page and "What the failure policy did" in page
    assert all(f"<td>{m.dbname}" in page and _password(m.url) not in page for m in members)
    report = json.loads(run.stdout)
    rows = {t["target"]: t for t in report["targets"]}
    assert rows[bad.dbname]["result"] == "failed"
    assert 'relation "orders" already exists' in rows[bad.dbname]["error"]
    assert "(then rolled back)" in rows[bad.dbname]["error"]
    touched = [m for m in members if rows[m.dbname]["result"] == "rolled back"]
    assert touched, report["counts"]  # targets expanded before the failure were undone ...
    assert set(report["counts"]) <= {"failed", "rolled back", "not started"}
    assert _hooks(project) == []  # the app hook never ran, so no rollback hook either
    for m in members:  # ... so no target keeps anything of this deploy
        applied, tables, column = _state(m)
        assert applied == [] and column is None, (m.dbname, rows[m.dbname])
        assert tables == (["orders"] if m is bad else [])
        assert not _unfinished(m) or rows[m.dbname]["result"] == "not started"


def test_an_unhealthy_app_rolls_the_app_back_once_and_every_target(tmp_path: Path, fleet: Fleet) -> None:
    project = _project(tmp_path, deploy='health_command = "exit 1"\nhealth_timeout = "1s"\n')
    members = fleet.create(6)
    targets = fleet.write(project / "targets.txt", members)

    run = run_pgshift(["deploy", "--targets", str(targets)], cwd=project, env={"COLUMNS": "300"}, timeout=300)
    assert run.returncode == 32, run.stderr
    assert "failed at health" in run.stderr
    assert _hooks(project) == ["app", "rollback"]  # the app back once, before the schema
    assert "6 rolled back" in run.stdout
    for m in members:
        assert _state(m) == ([], [], None)
        assert not _unfinished(m)
        with m.connect() as conn:  # every ledger has the fleet-wide steps
            steps = conn.execute("SELECT detail->>'step', detail->>'state' FROM pgshift.events "
                                 "WHERE event = 'deploy-step' AND detail->>'step' IN ('app', 'health') "
                                 "ORDER BY id").fetchall()
        assert ("app", "done") in steps and ("health", "failed") in steps


def test_kill_9_of_the_orchestrator_mid_expand_then_resume(tmp_path: Path, fleet: Fleet) -> None:
    project = _project(tmp_path, targets="parallel = 2\n", slow=True)
    members = fleet.create(6)
    slow = members[2:4]  # the first two expand; these hang in migration 3; the last two never start
    for m in slow:
        with m.connect() as conn:
            conn.execute("CREATE TABLE sleep_marker ()")
    targets = fleet.write(project / "targets.txt", members)

    proc = start_pgshift(["deploy", "--targets", str(targets)], cwd=project, url="")
    try:
        deadline = time.monotonic() + 120
        while not all(_sleeping(m) for m in slow):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    for m in slow:
        while _sleeping(m):
            time.sleep(0.1)
        with m.connect() as conn:
            conn.execute("DROP TABLE sleep_marker")
    assert [_unfinished(m) for m in members[:4]] == [True] * 4
    assert _hooks(project) == []

    again = run_pgshift(["deploy", "--targets", str(targets)], cwd=project)
    assert again.returncode == 48 and "--resume" in again.stderr, again.stderr

    resumed = run_pgshift(["deploy", "--targets", str(targets), "--resume", "--json"], cwd=project, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["resumed"] and report["outcome"] == "deployed" and report["counts"] == {"deployed": 6}
    assert _hooks(project) == ["app"]
    for m in members:
        assert _state(m) == (["1", "2", "3"], ["after_sleep", "items", "orders"], "text")
        assert not _unfinished(m)
        with m.connect() as conn:  # one deploy id over the fleet, in every ledger
            ids = {r[0] for r in conn.execute("SELECT detail->>'deploy' FROM pgshift.events "
                                              "WHERE event = 'deploy-started'").fetchall()}
        assert ids == {report["deploy_id"]}

    nothing = run_pgshift(["deploy", "--targets", str(targets), "--resume"], cwd=project)
    assert nothing.returncode == 48 and "Nothing to resume" in nothing.stderr


def _sleeping(member: Member) -> bool:
    with member.connect() as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()").fetchone()
        return row == (1,)


def _events(member: Member, event: str) -> list[dict[str, object]]:
    with member.connect() as conn:
        if conn.execute("SELECT to_regclass('pgshift.events')").fetchone() == (None,):
            return []
        rows = conn.execute("SELECT detail FROM pgshift.events WHERE event = %s ORDER BY id", (event,)).fetchall()
        return [dict(r[0]) for r in rows if isinstance(r[0], dict)]


def test_kill_9_in_the_watch_window_then_resume_roll_back_undoes_the_fleet(tmp_path: Path, fleet: Fleet) -> None:
    project = _project(tmp_path)
    toml = (project / "pgshift.toml").read_text().replace('watch = "1s"', 'watch = "60s"')
    (project / "pgshift.toml").write_text(toml)
    members = fleet.create(5)
    targets = fleet.write(project / "targets.txt", members)

    proc = start_pgshift(["deploy", "--targets", str(targets)], cwd=project, url="")
    try:
        deadline = time.monotonic() + 120
        while not any(e.get("step") == "health" and e.get("state") == "skipped"  # recorded as the watch starts
                      for e in _events(members[-1], "deploy-step")):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert _hooks(project) == ["app"]
    assert all(_state(m)[2] == "text" for m in members)  # expanded everywhere

    alone = run_pgshift(["deploy", "--resume"], cwd=project, url=members[0].url)
    assert alone.returncode == 48, alone.stderr
    assert "part of a fleet deploy" in alone.stderr and f"--targets {targets} --resume" in alone.stderr

    back = run_pgshift(["deploy", "--targets", str(targets), "--resume", "--roll-back", "--json"], cwd=project,
                       timeout=300)
    assert back.returncode == 0, back.stderr
    report = json.loads(back.stdout)
    assert report["outcome"] == "rolled back" and report["counts"] == {"rolled back": 5}
    assert _hooks(project) == ["app", "rollback"]
    for m in members:
        assert _state(m) == ([], [], None) and not _unfinished(m)


def test_a_failure_in_the_finish_phase_rolls_nothing_back_and_resume_finishes(tmp_path: Path, fleet: Fleet) -> None:
    project = _project(tmp_path, targets="parallel = 2\nmax_failures = 5\n")
    write_migration(project / "migrations", "4", "drop_legacy",
                    "-- pgshift:ignore PS020 -- no app version reads legacy\nDROP TABLE legacy;",
                    "CREATE TABLE legacy (id int);")
    toml = (project / "pgshift.toml").read_text()  # a verified backup of each target before its DROP TABLE
    (project / "pgshift.toml").write_text(toml.replace('policy = "never"', 'policy = "destructive-only"\n'
                                                                           'directory = "backups"'))
    members = fleet.create(5)
    bad = members[2]
    for m in members:
        with m.connect() as conn:
            conn.execute("CREATE TABLE legacy (id int)")
    with bad.connect() as conn:  # the deferred DROP TABLE fails here
        conn.execute("CREATE VIEW legacy_ids AS SELECT id FROM legacy")
    targets = fleet.write(project / "targets.txt", members)

    run = run_pgshift(["deploy", "--targets", str(targets), "--json"], cwd=project, timeout=300)
    assert run.returncode == 32, run.stderr
    assert "failed in its finish phase" in run.stderr and "nothing was rolled back" in run.stderr
    assert f"`pgshift deploy --targets {targets} --resume`" in run.stderr
    rows = {t["target"]: t for t in json.loads(run.stdout)["targets"]}
    assert rows[bad.dbname]["result"] == "failed" and "other objects depend on it" in rows[bad.dbname]["error"]
    assert [rows[m.dbname]["result"] for m in members if m is not bad] == ["deployed"] * 4
    assert _hooks(project) == ["app"]  # no rollback: the new version runs on contracted targets
    assert _state(bad)[0] == ["1", "2", "3"] and _unfinished(bad)

    refused = run_pgshift(["deploy", "--targets", str(targets), "--resume", "--roll-back"], cwd=project)
    assert refused.returncode == 48 and "cannot be rolled back" in refused.stderr, refused.stderr

    with bad.connect() as conn:
        conn.execute("DROP VIEW legacy_ids")
    resumed = run_pgshift(["deploy", "--targets", str(targets), "--resume", "--json"], cwd=project, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["counts"] == {"deployed": 5}
    assert _hooks(project) == ["app"]
    for m in members:
        assert _state(m) == (["1", "2", "3", "4"], ["items", "orders"], "text") and not _unfinished(m)


def test_an_undo_that_stops_on_one_target_is_finished_by_resume_roll_back(tmp_path: Path, fleet: Fleet) -> None:
    project = _project(tmp_path, app="exit 3")
    blocked = "DO $$ BEGIN IF to_regclass('public.undo_blocker') IS NOT NULL THEN RAISE EXCEPTION 'undo blocked'; " \
              "END IF; END $$;"
    write_migration(project / "migrations", "3", "orders", "CREATE TABLE orders (id bigint PRIMARY KEY);",
                    f"{blocked}\nDROP TABLE orders;")
    members = fleet.create(5)
    stuck = members[3]
    with stuck.connect() as conn:
        conn.execute("CREATE TABLE undo_blocker ()")  # the down part of migration 3 fails here
    targets = fleet.write(project / "targets.txt", members)

    run = run_pgshift(["deploy", "--targets", str(targets), "--json"], cwd=project, timeout=300)
    assert run.returncode == 32, run.stderr
    assert "failed at app" in run.stderr and "undoing it stopped on 1 point(s)" in run.stderr
    assert f"{stuck.dbname}: " in run.stderr and "undo blocked" in run.stderr
    assert f"`pgshift deploy --targets {targets} --resume --roll-back`" in run.stderr
    rows = {t["target"]: t["result"] for t in json.loads(run.stdout)["targets"]}
    assert rows == {m.dbname: "undo failed" if m is stuck else "rolled back" for m in members}
    assert _hooks(project) == ["rollback"]  # the app hook failed; it may have half run, so roll it back
    assert _state(stuck)[0] == ["1", "2", "3"] and _unfinished(stuck)

    forward = run_pgshift(["deploy", "--targets", str(targets), "--resume"], cwd=project)
    assert forward.returncode == 48 and "was being rolled back" in forward.stderr, forward.stderr

    with stuck.connect() as conn:
        conn.execute("DROP TABLE undo_blocker")
    back = run_pgshift(["deploy", "--targets", str(targets), "--resume", "--roll-back", "--json"], cwd=project,
                       timeout=300)
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["outcome"] == "rolled back"
    assert _hooks(project) == ["rollback", "rollback"]  # hooks are idempotent; the app had started
    for m in members:
        assert _state(m) == ([], [], None) and not _unfinished(m)


def test_only_the_abort_failure_policy_is_run_over_a_fleet(tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / "targets.txt").write_text("postgresql://app:pw@db.invalid/x\n")
    settings = load_settings(cwd=project, environ={})
    settings = dataclasses.replace(settings, deploy=dataclasses.replace(settings.deploy, on_failure="restore"))
    with pytest.raises(api.PgshiftError, match=r"implements deploy.on_failure = .abort. only.*'restore'") as raised:
        api.deploy_targets(settings, "targets.txt")
    assert raised.value.exit_code == 3
