"""`pgshift deploy --targets FILE` on databases of two real clusters: expand every target, the app
hook once, watch, contract every target; the failure policy on a partly expanded fleet; kill -9 of
the orchestrator, then --resume."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from pgshift import api
from pgshift.config import load_settings
from tests.fleet.conftest import Fleet, Member
from tests.fleet.helpers import SLEEP_IF_MARKED, kill_when_sleeping, mark, password, sleep_if_marked
from tests.helpers import run_pgshift, start_pgshift, write_migration

ADD_STATUS = """
schema: public
lock_timeout: 500ms
operations:
  - add_column:
      table: items
      column: {name: status, type: text, default: "'NEW'", nullable: true}
"""


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
        assert password(m.url) not in page + run.stdout + run.stderr
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
    assert all(f"<td>{m.dbname}" in page and password(m.url) not in page for m in members)
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


def test_a_target_failing_part_way_through_a_statement_by_statement_migration_names_what_stays(
        tmp_path: Path, fleet: Fleet) -> None:
    """Its first statement committed, the second failed: the undo does not run the down part of a migration that
    ran part-way (written for all of it, here it would drop the table the failing statement found), but says
    so, for that target; the hint (fix, then deploy again) continues it at the failed statement."""
    project = _project(tmp_path, targets="parallel = 1\nmax_failures = 0\n")
    write_migration(project / "migrations", "3", "orders",
                    "CREATE TABLE orders (id bigint PRIMARY KEY);\nCREATE TABLE clash ();",
                    "DROP TABLE clash;\nDROP TABLE orders;", directives=("no-transaction",))
    members = fleet.create(3)
    bad = members[1]
    with bad.connect() as conn:
        conn.execute("CREATE TABLE clash (legacy int)")  # the second statement of migration 3 fails here
    targets = fleet.write(project / "targets.txt", members)

    run = run_pgshift(["deploy", "--targets", str(targets), "--json"], cwd=project, timeout=300)
    assert run.returncode == 32, run.stderr
    report = json.loads(run.stdout)
    rows = {t["target"]: t for t in report["targets"]}
    assert [rows[m.dbname]["result"] for m in members] == ["rolled back", "failed", "not started"]
    assert rows[bad.dbname]["error"].endswith("(then rolled back, but for what the undo lines name)")
    left = (f"{bad.dbname}: left migration 3 orders part-applied: its statements 1-1 of 2 stay committed (a "
            "migration run statement by statement is not undone part-way")
    assert any(line.startswith(left) for line in report["undo"]), report["undo"]
    assert f"{bad.dbname}: left migration 3 orders part-applied" in run.stderr
    assert _state(bad) == ([], ["clash", "orders"], None)  # migrations 1 and 2 undone; 3's first statement stays
    assert _state(members[0]) == ([], [], None)

    with bad.connect() as conn:  # the cause fixed
        conn.execute("DROP TABLE clash")
    hint = run.stderr[run.stderr.index("then run `") + len("then run `"):]
    again = run_pgshift([*hint[:hint.index("`")].split()[1:], "--json"], cwd=project, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"] == {"deployed": 3}
    for m in members:
        assert _state(m) == (["1", "2", "3"], ["clash", "items", "orders"], "text") and not _unfinished(m)


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
    mark(slow)
    targets = fleet.write(project / "targets.txt", members)

    kill_when_sleeping(start_pgshift(["deploy", "--targets", str(targets)], cwd=project, url=""), slow)
    for m in slow:
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


@pytest.mark.parametrize("where", ["file", "environment"])
def test_only_the_abort_failure_policy_is_run_over_a_fleet(tmp_path: Path, where: str) -> None:
    """on_failure = "restore" over a fleet is refused before any target is read (this one cannot be reached),
    naming the setting and where it is set."""
    from pgshift.config import RESTORE_CONFIRMATION

    project = _project(tmp_path, deploy=f'restore_confirm = "{RESTORE_CONFIRMATION}"\n'
                       + ('on_failure = "restore"\n' if where == "file" else ""))
    (project / "targets.txt").write_text("postgresql://app:pw@db.invalid/x\n")
    env = {"PGSHIFT_DEPLOY__ON_FAILURE": "restore"} if where == "environment" else {}
    run = run_pgshift(["deploy", "--targets", "targets.txt"], cwd=project, env=env)
    assert run.returncode == 3, run.stderr
    said = " ".join(run.stderr.split())
    assert "deploy --targets implements deploy.on_failure = \"abort\" only, and deploy.on_failure is 'restore' " \
           f"in {project / 'pgshift.toml'} (or the environment variable PGSHIFT_DEPLOY__ON_FAILURE, which " \
           "overrides it)" in said, said
    assert "Nothing was read or changed" in said and 'set deploy.on_failure = "abort" under [deploy]' in said
    assert "db.invalid" not in said and "pw" not in said
    settings = load_settings(cwd=project, environ=env)
    with pytest.raises(api.PgshiftError, match=r"deploy.on_failure is 'restore' in .*pgshift.toml") as raised:
        api.deploy_targets(settings, project / "targets.txt")
    assert raised.value.exit_code == 3


# migration 2 with a step its abort runs first, sleeping where the table abort_sleep_marker exists
ADD_STATUS_SLOW_ABORT = ADD_STATUS + f"""  - sql: {{up: "SELECT 1", down: "{sleep_if_marked('abort_sleep_marker')}"}}
"""


def test_kill_9_in_the_middle_of_the_undo_then_the_hint_finishes_it(tmp_path: Path, fleet: Fleet) -> None:
    """The app hook fails, so every target is undone; the orchestrator is killed while two targets are inside
    the down part of migration 3 (statement by statement: half of it is committed) and a third inside the
    abort of migration 2's expand. The refused rerun's hint finishes the undo: every target ends as before
    the deploy, nothing of it left, every ledger closed, and the summary says which target the killed run
    had already undone."""
    project = _project(tmp_path, targets="parallel = 3\n", app="exit 3")
    write_migration(project / "migrations", "3", "orders",
                    "CREATE TABLE orders (id bigint PRIMARY KEY);\nCREATE TABLE after_sleep ();",
                    f"DROP TABLE after_sleep;\n{sleep_if_marked('undo_sleep_marker')}\nDROP TABLE orders;",
                    directives=("no-transaction",))
    (project / "migrations" / "2_add_status.ops.yaml").write_text(ADD_STATUS_SLOW_ABORT)
    members = fleet.create(6)
    in_down, in_abort = members[1:3], members[3]  # the first is undone before; the last two after the kill
    mark(in_down, "undo_sleep_marker")
    mark([in_abort], "abort_sleep_marker")
    targets = fleet.write(project / "targets.txt", members)

    kill_when_sleeping(start_pgshift(["deploy", "--targets", str(targets)], cwd=project, url=""),
                       [*in_down, in_abort])
    for m in [*in_down, in_abort]:
        with m.connect() as conn:
            conn.execute("DROP TABLE IF EXISTS undo_sleep_marker, abort_sleep_marker")
    for m in in_down:  # half undone: the statement before the sleep is committed, the one after it is not
        assert _state(m)[:2] == (["1", "2"], ["items", "orders"]), m.dbname
    with in_abort.connect() as conn:  # migration 3 undone, the abort of migration 2 stopped in its first step
        assert conn.execute("SELECT phase FROM pgshift.ops_state WHERE version = '2'").fetchone() == ("aborting",)
    assert _state(in_abort)[1:] == (["items"], "text")
    assert _hooks(project) == ["rollback"]
    assert not _unfinished(members[0]) and all(_unfinished(m) for m in members[1:])

    forward = run_pgshift(["deploy", "--targets", str(targets), "--resume"], cwd=project)
    assert forward.returncode == 48 and "was being rolled back" in forward.stderr, forward.stderr
    hint = forward.stderr[forward.stderr.index("`pgshift deploy"):]
    command = hint[1:hint.index("`", 1)].split()
    assert command == ["pgshift", "deploy", "--targets", str(targets), "--resume", "--roll-back"], hint
    back = run_pgshift([*command[1:], "--json"], cwd=project, timeout=300)
    assert back.returncode == 0, back.stderr
    report = json.loads(back.stdout)
    # the first target was undone by the killed run: reported so, not as "not started"
    assert report["outcome"] == "rolled back" and report["counts"] == {"rolled back": 6}, report
    assert f"1 more target(s) had been undone by the run that was interrupted ({members[0].dbname})" \
        in report["undo"][-1], report["undo"]
    assert _hooks(project) == ["rollback", "rollback"]  # the app hook had started: its rollback runs again
    for m in members:
        assert _state(m) == ([], [], None) and not _unfinished(m), m.dbname
        with m.connect() as conn:  # no migration left half-way, no expand left, no version schema
            assert conn.execute("SELECT version, status, direction FROM pgshift.migrations WHERE status NOT IN "
                                "('rolled_back')").fetchall() == []
            assert conn.execute("SELECT version, phase FROM pgshift.ops_state WHERE phase <> 'aborted'") \
                .fetchall() == []
            assert conn.execute("SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN "
                                "('public', 'information_schema', 'pgshift')").fetchall() == []
