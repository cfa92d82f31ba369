"""`pgshift deploy` end to end with a real app and a real server: success, the runbook, and the rollbacks."""

from __future__ import annotations

import json
import shlex
import subprocess
import threading
import time

import psycopg

from tests.deploy.helpers import Project
from tests.helpers import run_pgshift, start_pgshift


def test_a_deploy_succeeds_end_to_end_and_its_runbook_undoes_it(project: Project) -> None:
    original = project.snapshot()
    assert project.get("/query") == (200, "old 200")
    done = project.deploy("--json", "--html", "deploy.html")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["outcome"] == "deployed"
    page = (project.root / "deploy.html").read_text()
    assert "<h2>Runbook</h2>" in page and "pgshift abort --version 002" in page and "<polyline" in page
    assert [s["name"] for s in report["steps"]] == ["check", "lint", "backup", "migrate", "app", "health", "watch",
                                                   "deferred", "contract"]
    assert report["batch"] == ["002", "003"]
    app = next(s for s in report["steps"] if s["name"] == "app")
    assert any("switched to new" in line for line in app["output"])  # the hook's output is kept
    assert project.get("/query") == (200, "new 200")  # the new version reads the expanded column
    assert report["watch"]["watch"]["samples"] >= 5
    assert "002" in report["contract_due"]
    # the ledger has an event per step
    steps = [e["step"] for e in project.events("deploy-step") if e["state"] != "started"]
    assert steps == [s["name"] for s in report["steps"]]
    # status says when the contract is due
    status = run_pgshift(["status"], cwd=project.root, url=project.url)
    assert "expanded since" in status.stdout and "contract due after" in status.stdout
    # the runbook, run as written, gives the original catalog back
    assert report["runbook"][0]["kind"] == "shell"
    for step in report["runbook"]:
        if step["kind"] == "shell":
            subprocess.run(step["command"], shell=True, check=True, cwd=project.root, capture_output=True)
        else:
            undo = run_pgshift(shlex.split(step["command"])[1:], cwd=project.root, url=project.url)
            assert undo.returncode == 0, undo.stderr
    assert project.snapshot() == original
    project.wait_healthy()
    assert project.get("/query") == (200, "old 200")


def test_a_new_version_that_never_becomes_healthy_is_rolled_back(project: Project) -> None:
    original = project.snapshot()
    project.toml["deploy"]["app_command"] = project.switch("broken")
    project.write_toml()
    done = project.deploy()
    assert done.returncode == 45, done.stderr  # HealthCheckFailed
    assert "error (deploy-unhealthy)" in done.stderr and "did not become healthy" in done.stderr
    assert "ran deploy.rollback_app_command" in done.stderr and "aborted the expand of 002" in done.stderr
    assert "rolled back 003" in done.stderr
    assert project.snapshot() == original  # the schema is back to the original catalog
    assert project.version() == "old"
    project.wait_healthy()
    assert project.get("/query") == (200, "old 200")  # the old version runs, its rows all there
    finished = project.events("deploy-finished")
    assert finished[-1]["outcome"] == "rolled back" and finished[-1]["step"] == "health"


def test_a_lock_pile_up_in_the_watch_window_rolls_the_deploy_back(project: Project) -> None:
    original = project.snapshot()
    project.toml["deploy"]["watch"] = "30s"
    project.toml["watch"]["max_blocked_ms"] = 500
    project.write_toml()
    deploy = start_pgshift(["deploy", "--json", "--html", "deploy.html"], cwd=project.root, url=project.url)
    released = threading.Event()

    def pile_up() -> None:  # once the watch window opens: one session holds a lock, two queue behind it
        deadline = time.monotonic() + 60
        while not any(e["step"] == "watch" for e in project.events("deploy-step")):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        with psycopg.connect(project.url, autocommit=True) as app:  # writes of both versions meanwhile
            app.execute("INSERT INTO accounts (email) SELECT 'during' || g FROM generate_series(1, 5) g")
            app.execute("UPDATE accounts SET status = 'VIP' WHERE id <= 3")
        with psycopg.connect(project.url) as holder:
            holder.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
            waiters = [threading.Thread(target=_select_jobs, args=(project.url,)) for _ in range(2)]
            for w in waiters:
                w.start()
            released.wait(20)
            holder.rollback()
        for w in waiters:
            w.join()

    injector = threading.Thread(target=pile_up)
    injector.start()
    try:
        out, err = deploy.communicate(timeout=120)
    finally:
        released.set()
        injector.join()
    assert deploy.returncode == 46, err  # DeployBreached
    report = json.loads(out)
    assert report["outcome"] == "rolled back"
    assert "watch.max_blocked_ms" in report["error"]
    page = (project.root / "deploy.html").read_text()
    assert "What the failure policy did" in page and "sessions waiting (peak 2)" in page
    assert report["steps"][-1]["name"] == "watch" and report["steps"][-1]["state"] == "failed"
    assert project.snapshot() == original
    assert project.version() == "old"
    assert "accounts.status (3 row(s) hold values other than its default" in report["undo"][-1]
    with psycopg.connect(project.url, autocommit=True) as conn:  # no row written through the old schema lost
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (205,)


def _select_jobs(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM jobs")
