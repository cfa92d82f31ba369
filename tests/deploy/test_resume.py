"""kill -9 of `pgshift deploy` mid-way, then `--resume`; a second deploy while one runs names the first."""

from __future__ import annotations

import json
import os
import signal
import time

from tests.deploy.helpers import Project
from tests.helpers import run_pgshift, start_pgshift


def _wait_for(project: Project, test: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        steps = project.events("deploy-step") + project.events("deploy-hook")
        if any(test == f"{e.get('step') or e.get('hook')}:{e['state']}" for e in steps):
            return
        assert time.monotonic() < deadline, f"never saw {test}"
        time.sleep(0.2)


def test_kill_9_during_the_app_hook_then_resume_finishes_the_deploy(project: Project) -> None:
    (project.app / "hang").write_text("")
    first = start_pgshift(["deploy"], cwd=project.root, url=project.url)
    try:
        _wait_for(project, "app_command:started")
        time.sleep(0.5)
        # a second deploy meanwhile is refused, naming the one that runs
        second = run_pgshift(["deploy"], cwd=project.root, url=project.url)
        assert second.returncode == 9, second.stderr
        assert "Another `pgshift deploy` is running" in second.stderr and "pgshift deploy, user" in second.stderr
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    os.kill(int((project.app / "hook.pid").read_text()), signal.SIGKILL)
    (project.app / "hang").unlink()
    # a new deploy on top of the killed one is refused, naming what to do
    again = run_pgshift(["deploy"], cwd=project.root, url=project.url)
    assert again.returncode == 48 and "--resume" in again.stderr, again.stderr
    resumed = run_pgshift(["deploy", "--resume", "--json"], cwd=project.root, url=project.url, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["resumed"] and report["outcome"] == "deployed"
    assert [s["name"] for s in report["steps"]] == ["app", "health", "watch", "deferred", "contract"]
    assert project.get("/query") == (200, "new 200")
    nothing = run_pgshift(["deploy", "--resume"], cwd=project.root, url=project.url)
    assert nothing.returncode == 48 and "Nothing to resume" in nothing.stderr


def test_kill_9_during_the_watch_window_then_resume_roll_back_undoes_it(project: Project) -> None:
    original = project.snapshot()
    project.toml["deploy"]["watch"] = "60s"
    project.write_toml()
    first = start_pgshift(["deploy"], cwd=project.root, url=project.url)
    try:
        _wait_for(project, "watch:started")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    assert project.get("/query") == (200, "new 200")
    undone = run_pgshift(["deploy", "--resume", "--roll-back", "--json"], cwd=project.root, url=project.url)
    assert undone.returncode == 0, undone.stderr
    report = json.loads(undone.stdout)
    assert report["outcome"] == "rolled back"
    assert report["undo"][0].startswith("ran deploy.rollback_app_command")
    assert project.snapshot() == original
    project.wait_healthy()
    assert project.get("/query") == (200, "old 200")
