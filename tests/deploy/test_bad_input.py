"""Bad input to `pgshift deploy`: one clear paragraph and a distinct exit code each, nothing lost."""

from __future__ import annotations

import json

from tests.deploy.helpers import Project, free_port
from tests.helpers import run_pgshift, write_migration


def _one_paragraph(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("·")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_a_hook_that_does_not_exist_is_named_and_the_schema_rolled_back(project: Project) -> None:
    original = project.snapshot()
    project.toml["deploy"]["app_command"] = "no-such-deploy-tool --rollout"
    project.write_toml()
    done = project.deploy()
    assert done.returncode == 42, done.stderr
    line = _one_paragraph(done.stderr)
    assert "error (deploy-hook-not-found)" in line and "no-such-deploy-tool" in line and "not found" in line
    # The rollback hook restarted the old version; the deploy returns once it answers healthy, not before.
    assert "ran deploy.rollback_app_command" in line and "the application is healthy again" in line, line
    assert project.snapshot() == original
    assert project.get("/query") == (200, "old 200")


def test_a_hook_that_hangs_is_killed_at_its_timeout(project: Project) -> None:
    original = project.snapshot()
    project.toml["deploy"]["app_command"] = "echo rolling out; sleep 60"
    project.toml["deploy"]["app_timeout"] = "1s"
    project.write_toml()
    done = project.deploy("--json")
    assert done.returncode == 43, done.stderr
    assert "deploy.app_timeout = 1s" in done.stderr and "rolling out" in done.stderr
    app = json.loads(done.stdout)["steps"][-1]
    assert app["name"] == "app" and app["state"] == "failed" and app["output"] == ["rolling out"]
    assert project.snapshot() == original


def test_an_unreachable_health_url_stops_before_anything_changes(project: Project) -> None:
    original = project.snapshot()
    project.toml["app"]["health_url"] = f"http://127.0.0.1:{free_port()}/health"
    project.write_toml()
    done = project.deploy()
    assert done.returncode == 45, done.stderr
    line = _one_paragraph(done.stderr)
    assert "Connection refused" in line and "Nothing was changed" in line and "app.health_url" in line
    assert project.snapshot() == original
    assert project.events("deploy-finished")[-1]["outcome"] == "failed"  # a later deploy is not blocked


def test_bad_threshold_and_duration_syntax_names_the_key(project: Project) -> None:
    project.toml["watch"]["max_transaction"] = "ten seconds"
    project.write_toml()
    done = project.deploy()
    assert done.returncode == 3, done.stderr
    assert "watch.max_transaction" in _one_paragraph(done.stderr) and "pgshift.toml" in done.stderr
    project.toml["watch"]["max_transaction"] = "0"
    project.toml["deploy"]["watch"] = "10 parsecs"
    project.write_toml()
    done = project.deploy()
    assert done.returncode == 3 and "deploy.watch" in _one_paragraph(done.stderr), done.stderr
    project.toml["deploy"]["watch"] = "1s"
    project.toml["deploy"]["on_failure"] = "pray"
    project.write_toml()
    done = project.deploy()
    assert done.returncode == 3 and "deploy.on_failure" in _one_paragraph(done.stderr), done.stderr


def test_dry_run_prints_the_plan_and_changes_nothing(project: Project) -> None:
    original = project.snapshot()
    done = project.deploy("--dry-run")
    assert done.returncode == 0, done.stderr
    assert "apply 002 add_status (expand phase)" in done.stdout and "contract: later" in done.stdout
    assert project.snapshot() == original
    assert project.events("deploy-started") == []


def test_contract_before_the_soak_is_refused_unless_forced(project: Project) -> None:
    project.toml["deploy"]["watch"] = "0"
    project.write_toml()
    done = project.deploy()
    assert done.returncode == 0, done.stderr
    assert "deploy " in done.stdout and ": deployed" in done.stdout  # the text report
    assert "contract of 002 due after" in done.stdout and "pgshift abort --version 002" in done.stdout
    early = run_pgshift(["contract"], cwd=project.root, url=project.url)
    assert early.returncode == 41, early.stderr
    assert "soak" in early.stderr and "--force" in early.stderr
    forced = run_pgshift(["contract", "--force"], cwd=project.root, url=project.url)
    assert forced.returncode == 0, forced.stderr


def test_a_failing_health_command_rolls_the_deploy_back(project: Project) -> None:
    original = project.snapshot()
    project.toml["deploy"]["health_command"] = "echo 'not ready: cache cold'; exit 3"
    project.toml["deploy"]["health_timeout"] = "1s"
    project.write_toml()
    done = project.deploy()
    assert done.returncode == 45, done.stderr
    assert "deploy.health_command exited 3: not ready: cache cold" in done.stderr
    # The same check says the previous version is not healthy either: said in the report, the schema undone.
    assert "The previous application version did not become healthy within deploy.health_timeout = 1s" \
        in done.stderr, done.stderr
    assert project.snapshot() == original and project.version() == "old"


def test_a_constraint_the_rows_already_there_break_stops_the_deploy_before_anything_changes(project: Project) -> None:
    """The checklist looks for the rows a pending CHECK would reject: the deploy stops before its first step
    instead of failing in the middle of its migrations, and says which rows and how to list them."""
    original = project.snapshot()
    write_migration(project.root / "migrations", "005", "short_emails",
                    "-- pgshift:ignore PS005 -- accounts is small\n"
                    "ALTER TABLE accounts ADD CONSTRAINT short_email CHECK (length(email) < 6);")
    done = project.deploy()
    assert done.returncode == 40, done.stderr
    line = _one_paragraph(done.stderr)
    assert "existing rows meet the pending constraints: 1 of 1 would fail on rows already there" in line, line
    assert ('101 rows violate short_email in "public"."accounts", e.g. id = 100; id = 101; id = 102. List them with: '
            'SELECT * FROM "public"."accounts" WHERE NOT (length(email) < 6);') in line, line
    assert project.snapshot() == original and project.version() == "old"
