"""`pgshift deploy` end to end with a real app and a real server: success, the runbook, and the rollbacks."""

from __future__ import annotations

import json
import shlex
import subprocess
import threading
import time

import psycopg

from tests.deploy.helpers import Project
from tests.helpers import run_pgshift


def test_a_deploy_succeeds_end_to_end_and_its_runbook_undoes_it(project: Project) -> None:
    original = project.snapshot()
    assert project.get("/query") == (200, "old 200")
    done = project.deploy("--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["outcome"] == "deployed"
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
