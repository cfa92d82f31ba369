"""Destructive migrations wait for the watch window; a breach while migrating fails that step; an undo
that cannot finish says what is left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgshift.errors import ConfigError
from pgshift.units import duration_ms
from tests.deploy.helpers import Project
from tests.helpers import write_migration


def test_durations_take_minutes_and_days() -> None:
    assert duration_ms("10m") == 600_000 and duration_ms("7d") == 7 * 86_400_000
    with pytest.raises(ConfigError, match="'7 weeks'"):
        duration_ms("7 weeks", key="deploy.soak")


def test_a_destructive_migration_is_deferred_until_after_the_watch_window_with_a_backup_first(
        tmp_path: Path, db_url: str) -> None:
    project = Project(tmp_path, db_url, destructive=True)
    try:
        project.toml["backup"]["policy"] = "destructive-only"
        project.write_toml()
        done = project.deploy("--json", timeout=300)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["batch"] == ["002", "003"] and report["deferred"] == ["004"]
        assert report["backup"] and Path(report["backup"]).exists()  # taken before anything ran
        names = [s["name"] for s in report["steps"]]
        assert names.index("watch") < names.index("deferred")
        deferred = report["steps"][names.index("deferred")]
        assert deferred["state"] == "done" and "004" in deferred["detail"]
        lint = report["steps"][names.index("lint")]
        assert "004 drop_legacy: destructive" in lint["detail"]
        project.toml["deploy"]["destructive"] = "refuse"
        project.write_toml()
        write_migration(tmp_path / "migrations", "005", "drop_jobs",
                        "-- pgshift:ignore PS020 -- unused\nDROP TABLE jobs;", "CREATE TABLE jobs (id int);")
        refused = project.deploy()
        assert refused.returncode == 19 and "005 drop_jobs" in refused.stderr, refused.stderr
        assert "Nothing was changed" in refused.stderr
    finally:
        project.stop()


def test_a_threshold_crossed_while_migrating_fails_the_migrate_step(project: Project) -> None:
    original = project.snapshot()
    project.toml["watch"]["metric_commands"] = {"errors": "echo 7"}
    project.toml["watch"]["metric_limits"] = {"errors": "1"}
    project.write_toml()
    done = project.deploy("--json")
    assert done.returncode == 46, done.stderr
    report = json.loads(done.stdout)
    assert report["steps"][-1]["name"] == "migrate" and report["steps"][-1]["state"] == "failed"
    assert "metric errors is 7" in report["error"]
    assert not any(s["name"] == "app" for s in report["steps"])  # the app hook never ran
    assert project.snapshot() == original and project.version() == "old"


def test_an_undo_that_cannot_finish_names_what_is_left(project: Project) -> None:
    write_migration(project.root / "migrations", "004", "no_down", "CREATE TABLE kept (id int);")
    project.toml["deploy"]["app_command"] = project.switch("broken")
    project.write_toml()
    done = project.deploy("--json")
    assert done.returncode == 49, done.stderr
    report = json.loads(done.stdout)
    assert "Cannot roll back: 004 no_down" in report["undo"][-1] and "has no down part" in report["undo"][-1]
    assert "pgshift abort --version 002" in [s["command"] for s in report["runbook"]]
    assert "Done so far: ran deploy.rollback_app_command" in done.stderr
