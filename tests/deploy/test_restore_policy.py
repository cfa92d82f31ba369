"""deploy.on_failure = "restore": the deploy's own verified backup is restored beside the database and swapped in
(losing every write since the backup, which the report says), then the application is rolled back; a kill -9
mid-restore is finished by --resume; the setting is refused without its confirmation."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from pgshift.config import RESTORE_CONFIRMATION
from tests.deploy.helpers import Project
from tests.helpers import run_pgshift, start_pgshift


def _databases(url: str, pattern: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", (pattern,)).fetchall()
    return [str(r[0]) for r in rows]


@pytest.fixture
def restoring(project: Project, db_name: str) -> Iterator[Project]:
    """The project with on_failure = "restore"; the app hook writes a row (after the backup) and starts the
    broken version. The databases the restores keep are dropped afterwards."""
    insert = (f"{sys.executable} -c \"import psycopg; psycopg.connect(open('app/dsn').read(), autocommit=True)"
              ".execute(\\\"INSERT INTO accounts (email) VALUES ('written-after-the-backup')\\\")\"")
    project.toml["deploy"].update({"on_failure": "restore", "restore_confirm": RESTORE_CONFIRMATION,
                                   "app_command": f"{insert} && {project.switch('broken')}"})
    project.write_toml()
    try:
        yield project
    finally:
        with psycopg.connect(project.url, dbname="postgres", autocommit=True) as conn:
            for name in _databases(project.url, f"{db_name}_%"):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _accounts(url: str) -> tuple[int, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*), count(*) FILTER (WHERE email = 'written-after-the-backup') "
                           "FROM accounts").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_on_failure_restore_needs_its_confirmation(project: Project) -> None:
    project.toml["deploy"]["on_failure"] = "restore"
    project.write_toml()
    refused = project.deploy()
    assert refused.returncode == 3, refused.stderr
    text = " ".join(refused.stderr.split())
    assert "deploy.restore_confirm" in text and "pgshift.toml" in text and "it is not set" in text
    assert "every write since that backup is lost" in text and "every session on the database is ended" in text
    project.toml["deploy"]["restore_confirm"] = "yes"
    project.write_toml()
    refused = project.deploy()
    assert refused.returncode == 3 and "it is 'yes'" in " ".join(refused.stderr.split()), refused.stderr
    assert project.events("deploy-started") == []  # nothing ran


def test_a_failed_deploy_restores_the_backup_and_loses_the_writes_since_it(restoring: Project, db_name: str) -> None:
    project = restoring
    original = project.snapshot()
    done = project.deploy("--json")
    assert done.returncode == 45, done.stderr  # the broken version never became healthy
    report = json.loads(done.stdout)
    assert report["outcome"] == "restored"
    assert report["backup"] and report["restored"]["backup"] == report["backup"]
    kept = report["restored"]["kept_as"]
    assert kept.startswith(f"{db_name}_pre_restore_")
    assert report["restored"]["changed_tables"] == ["public.accounts had 201 row(s), the backup 200"]
    undo = " ".join(report["undo"])
    assert "every write since the backup is gone" in undo and "every session on it was ended" in undo
    assert "ran deploy.rollback_app_command" in undo and "the application is healthy again" in undo
    backup = next(s for s in report["steps"] if s["name"] == "backup")
    assert "deploy.on_failure = \"restore\"" in backup["detail"]  # taken although backup.policy = "never"
    # the database is the backup: the row written after it is gone, the schema is the original one
    assert _accounts(project.url) == (200, 0)
    assert project.snapshot() == original
    assert _accounts(project.url.replace(f"dbname={db_name}", f"dbname={kept}")) == (201, 1)  # kept as it was
    assert project.version() == "old"
    project.wait_healthy()
    assert project.get("/query") == (200, "old 200")
    # the restored database's ledger has the whole deploy, and says what was done
    finished = project.events("deploy-finished")
    assert finished[-1]["outcome"] == "restored" and finished[-1]["step"] == "health"
    assert [e["step"] for e in project.events("deploy-step") if e["state"] == "failed"] == ["health"]
    assert project.events("deploy-restored")[-1]["kept_as"] == kept
    again = run_pgshift(["deploy", "--resume"], cwd=project.root, url=project.url)
    assert again.returncode == 48 and "Nothing to resume" in again.stderr, again.stderr


@pytest.mark.parametrize("in_the_swap", [False, True], ids=["while-restoring", "live-database-closed"])
def test_kill_9_mid_restore_then_resume_finishes_the_restore(restoring: Project, db_name: str,
                                                            in_the_swap: bool) -> None:
    """``in_the_swap``: the kill also lands after the swap closed the live database to new sessions (the
    state it leaves is made here): --resume re-opens it before anything else."""
    project = restoring
    original = project.snapshot()
    deploy = start_pgshift(["deploy"], cwd=project.root, url=project.url)
    admin = project.url.replace(f"dbname={db_name}", "dbname=postgres")
    try:
        deadline = time.monotonic() + 120
        while not (copies := _databases(admin, f"{db_name}_restoring_%")):
            assert time.monotonic() < deadline and deploy.poll() is None, deploy.communicate()
            time.sleep(0.02)
        copy_url = project.url.replace(f"dbname={db_name}", f"dbname={copies[0]}")
        # hold the copy's ledger table: the restore stops on it (loading, comparing or recording), then is killed
        with psycopg.connect(copy_url) as holder:
            holder.execute("SET lock_timeout = '100ms'")
            while True:
                try:
                    holder.execute("LOCK TABLE pgshift.events IN ACCESS EXCLUSIVE MODE")
                    break
                except psycopg.Error:
                    holder.rollback()
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
            time.sleep(1)
            deploy.send_signal(signal.SIGKILL)
            deploy.wait(10)
            holder.rollback()
    finally:
        deploy.kill()
    assert _accounts(project.url) == (201, 1)  # the live database was not touched yet
    assert _databases(admin, f"{db_name}_restoring_%") == copies  # the half-made copy is left behind
    if in_the_swap:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(db_name)))
    resumed = run_pgshift(["deploy", "--resume", "--json"], cwd=project.root, url=project.url, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["resumed"] and report["outcome"] == "restored"
    assert report["steps"] == []  # no step was retried: the failure policy was finished
    assert _databases(admin, f"{db_name}_restoring_%") == []  # the leftover copy was dropped
    assert _accounts(project.url) == (200, 0) and project.snapshot() == original
    assert "ran deploy.rollback_app_command" in " ".join(report["undo"])
    project.wait_healthy()
    assert project.get("/query") == (200, "old 200")
    assert project.events("deploy-finished")[-1]["outcome"] == "restored"


def test_kill_9_after_the_swap_then_resume_only_rolls_the_app_back(restoring: Project, db_name: str) -> None:
    project = restoring
    deploy = start_pgshift(["deploy"], cwd=project.root, url=project.url)
    try:
        deadline = time.monotonic() + 120
        while not any(e.get("hook") == "app_command" and e["state"] == "finished"
                      for e in project.events("deploy-hook")):
            assert time.monotonic() < deadline and deploy.poll() is None, deploy.communicate()
            time.sleep(0.1)
        (project.app / "hang").write_text("")  # the rollback hook, run after the swap, now hangs
        while not (project.app / "hook.pid").exists():
            assert time.monotonic() < deadline and deploy.poll() is None, deploy.communicate()
            time.sleep(0.1)
        deploy.send_signal(signal.SIGKILL)
        deploy.wait(10)
    finally:
        deploy.kill()
    project.stop()  # the hanging hook
    (project.app / "hang").unlink()
    assert _accounts(project.url) == (200, 0)  # swapped: the restored database is live
    again = run_pgshift(["deploy"], cwd=project.root, url=project.url)
    assert again.returncode == 48 and "--resume" in again.stderr, again.stderr
    resumed = run_pgshift(["deploy", "--resume", "--json"], cwd=project.root, url=project.url, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["resumed"] and report["outcome"] == "restored" and report["steps"] == []
    assert report["restored"]["changed_tables"] == ["public.accounts had 201 row(s), the backup 200"]
    assert "ran deploy.rollback_app_command" in " ".join(report["undo"])
    assert len(_databases(project.url, f"{db_name}_pre_restore_%")) == 1  # restored once, not twice
    project.wait_healthy()
    assert project.get("/query") == (200, "old 200")
