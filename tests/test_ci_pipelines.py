"""The CI pipelines in examples/ci/ run here, step by step, as their CI would run them.

Every shell step (`run:` in GitHub Actions, `before_script:` + `script:` in GitLab CI) runs in
order with bash, in a git checkout of a small project whose merge request adds a migration, with
the CI variables set, the wheel built from this repo in place of the published package
(INSTALL_PGSHIFT), and this suite's real PostgreSQL in place of the service container. What cannot
run here is provided by the test instead, and listed: GitHub's `uses:` actions (checkout, Python,
artifact download and upload) and GitLab's artifact download (a local HTTP server serves the zip
at the jobs-API path the pipeline asks for). A pipeline that would fail on its first real run
fails here.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgshift.config import Settings
from pgshift.deploy import migrate
from pgshift.safety.backup import take_backup
from tests.conftest import PgServer
from tests.helpers import REPO, build_wheel, make_venv

GITHUB = REPO / "examples" / "ci" / "github" / "pgshift.yml"
GITLAB = REPO / "examples" / "ci" / "gitlab" / ".gitlab-ci.yml"
SERVICE_URL = re.compile(r"postgresql://postgres:postgres@(?:localhost|postgres):5432/postgres")

BASE = {
    "001_accounts.sql": "-- pgshift:up\nCREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL);\n"
                        "-- pgshift:down\nDROP TABLE accounts;\n",
    "002_orders.sql": "-- pgshift:up\nCREATE TABLE orders (id bigint PRIMARY KEY, account_id bigint);\n"
                      "-- pgshift:down\nDROP TABLE orders;\n",
}
SAFE_CHANGE = {"003_order_note.sql": "-- pgshift:up\nALTER TABLE orders ADD COLUMN note text;\n"
                                     "-- pgshift:down\nALTER TABLE orders DROP COLUMN note;\n"}
BLOCKING_CHANGE = {"003_order_index.sql": "-- pgshift:up\nCREATE INDEX orders_account ON orders (account_id);\n"
                                          "-- pgshift:down\nDROP INDEX orders_account;\n"}


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.com",
                               "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.com"})
    return done.stdout


@dataclass
class Project:
    checkout: Path
    snapshot: Path  # schema.sql and backup/ of "production": the artifacts a nightly job would make
    production_url: str


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def python_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What actions/setup-python or the python image give: a Python with pip and nothing installed."""
    return make_venv(tmp_path_factory.mktemp("ci-python") / "venv")


def _project(root: Path, production_url: str, change: dict[str, str]) -> Project:
    """A project whose default branch has BASE, deployed to production; the merge request adds ``change``."""
    origin, checkout = root / "origin.git", root / "checkout"
    _git(root, "init", "--quiet", "--bare", "--initial-branch", "main", str(origin))
    _git(root, "init", "--quiet", "--initial-branch", "main", str(checkout))
    (checkout / "pgshift.toml").write_text('migrations_dir = "migrations"\n')
    (checkout / "migrations").mkdir()
    for name, text in BASE.items():
        (checkout / "migrations" / name).write_text(text)
    _git(checkout, "add", "-A")
    _git(checkout, "commit", "--quiet", "-m", "base")
    _git(checkout, "remote", "add", "origin", str(origin))
    _git(checkout, "push", "--quiet", "origin", "main")
    _git(checkout, "checkout", "--quiet", "-b", "feature")
    for name, text in change.items():
        (checkout / "migrations" / name).write_text(text)
    _git(checkout, "add", "-A")
    _git(checkout, "commit", "--quiet", "-m", "the change under review")

    settings = Settings(database_url=production_url, base_dir=checkout, migrations_dir="migrations")
    (checkout / "migrations" / next(iter(change))).rename(root / "held-back")  # production has only BASE
    migrate(settings)
    (root / "held-back").rename(checkout / "migrations" / next(iter(change)))
    snapshot = root / "snapshot"
    snapshot.mkdir()
    dump = subprocess.run(["pg_dump", "--schema-only", "--no-owner", "--dbname", production_url],
                          capture_output=True, text=True, check=False, env=_pg_tool_env())
    assert dump.returncode == 0, dump.stderr
    (snapshot / "schema.sql").write_text(dump.stdout)
    made = take_backup(Settings(database_url=production_url, base_dir=root), directory=root / "backups")
    shutil.copytree(made.backup.path, snapshot / "backup")
    return Project(checkout, snapshot, production_url)


def _pg_tool_env() -> dict[str, str]:
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    extra = f"{bindirs[-1]}:" if bindirs else ""
    return {**os.environ, "PATH": extra + os.environ.get("PATH", "")}


def _environment(python_bin: Path, wheel: Path, values: dict[str, Any], urls: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in _pg_tool_env().items()
           if not k.startswith(("PGSHIFT_", "DATABASE_URL", "PYTHON", "VIRTUAL_ENV", "PYTEST"))}
    env["PATH"] = f"{python_bin}:{env['PATH']}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    for key, value in values.items():
        env[key] = str(value)
    for key, value in list(env.items()):
        if SERVICE_URL.fullmatch(value):  # the service container is this suite's server
            env[key] = urls[key]
    env["INSTALL_PGSHIFT"] = str(wheel)  # the wheel built from this repo, not the published package
    return env


def _run_step(script: str, *, cwd: Path, env: dict[str, str], what: str) -> subprocess.CompletedProcess[str]:
    # GitHub runs `run:` with `bash -e {0}`; GitLab runs its script lines in one bash with -e and pipefail.
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    done.args = what
    return done


def _flatten(lines: list[Any]) -> list[str]:
    out: list[str] = []
    for line in lines:
        out.extend(_flatten(line) if isinstance(line, list) else [str(line)])
    return out


# -- GitHub Actions ------------------------------------------------------------------------------
KNOWN_ACTIONS = {"actions/checkout", "actions/setup-python", "actions/download-artifact",
                 "github/codeql-action/upload-sarif", "actions/upload-artifact"}


def _run_github(project: Project, python_bin: Path, wheel: Path, urls: dict[str, str]
                ) -> Iterator[tuple[str, subprocess.CompletedProcess[str]]]:
    workflow = yaml.safe_load(GITHUB.read_text())
    for job_name, job in workflow["jobs"].items():
        for step in job["steps"]:
            if "uses" in step:
                action = step["uses"].split("@")[0]
                assert action in KNOWN_ACTIONS, f"{job_name}: a new action {action}; provide its effect in this test"
                if action == "actions/download-artifact":  # the nightly job's artifact, where it is asked for
                    source = {"production-schema": project.snapshot / "schema.sql",
                              "production-backup": project.snapshot / "backup"}[step["with"]["name"]]
                    target = project.checkout / step["with"]["path"]
                    target.mkdir(parents=True, exist_ok=True)
                    subprocess.run(["cp", "-a", *([str(p) for p in source.iterdir()] if source.is_dir()
                                                  else [str(source)]), str(target)], check=True)
                continue
            env = _environment(python_bin, wheel, {
                **workflow.get("env", {}), **job.get("env", {}), **step.get("env", {}),
                "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request",
                "GITHUB_BASE_REF": "main", "GITHUB_HEAD_REF": "feature", "GITHUB_WORKSPACE": project.checkout,
            }, urls)
            yield f"{job_name}: {step.get('name', step['run'][:40])}", _run_step(
                step["run"], cwd=project.checkout, env=env, what=job_name)


@pytest.fixture
def urls(pg_server: PgServer, db_url: str) -> dict[str, str]:
    """The service container's URLs, by variable: the test DSN is a superuser's, DATABASE_URL a database."""
    return {"PGSHIFT_TEST_DSN": pg_server.admin_url, "DATABASE_URL": db_url}


def test_the_github_pipeline_runs_green_for_a_safe_change(tmp_path: Path, pg_server: PgServer, urls: dict[str, str],
                                                          python_bin: Path, wheel: Path) -> None:
    production = pg_server.url_for(pg_server.create_database())
    project = _project(tmp_path, production, SAFE_CHANGE)
    ran = []
    for what, done in _run_github(project, python_bin, wheel, urls):
        assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        ran.append(what)
    assert ran == ["lint: Install pgshift", "lint: Lint the changed migrations against production's schema",
                   "migration-tests: Install pgshift and pytest", "migration-tests: Migration tests",
                   "rehearse: Install pgshift and the PostgreSQL client tools",
                   "rehearse: Rehearse the pending migrations on the restored backup"]
    sarif = json.loads((project.checkout / "pgshift.sarif").read_text())
    assert sarif["version"] == "2.1.0"
    assert [r["level"] for r in sarif["runs"][0]["results"] if r["level"] == "error"] == []
    report = (project.checkout / "rehearsal.html").read_text()
    assert "003" in report and "order_note" in report


def test_the_github_pipeline_stops_a_blocking_index_build(tmp_path: Path, pg_server: PgServer, urls: dict[str, str],
                                                          python_bin: Path, wheel: Path) -> None:
    production = pg_server.url_for(pg_server.create_database())
    project = _project(tmp_path, production, BLOCKING_CHANGE)
    steps = _run_github(project, python_bin, wheel, urls)
    _install, lint = next(steps), next(steps)
    assert lint[1].returncode == 1, lint[1].stdout + lint[1].stderr
    assert "::error file=migrations/003_order_index.sql,line=2" in lint[1].stdout
    results = json.loads((project.checkout / "pgshift.sarif").read_text())["runs"][0]["results"]
    assert "PS001" in [r["ruleId"] for r in results if r["level"] == "error"]


# -- GitLab CI -----------------------------------------------------------------------------------
class _ArtifactServer(http.server.ThreadingHTTPServer):
    zip_path: Path
    requests: list[str]


class _ArtifactHandler(http.server.BaseHTTPRequestHandler):
    server: _ArtifactServer

    def do_GET(self) -> None:
        self.server.requests.append(f"{self.path} token={self.headers.get('JOB-TOKEN')}")
        if not re.fullmatch(r"/api/v4/projects/42/jobs/artifacts/main/download\?job=production-snapshot", self.path):
            self.send_error(404)
            return
        body = self.server.zip_path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        return None


@pytest.fixture
def gitlab_api(tmp_path: Path) -> Iterator[_ArtifactServer]:
    server = _ArtifactServer(("127.0.0.1", 0), _ArtifactHandler)
    server.zip_path = tmp_path / "artifacts.zip"
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _zip_snapshot(snapshot: Path, dest: Path) -> None:
    with zipfile.ZipFile(dest, "w") as archive:
        for path in sorted(snapshot.rglob("*")):
            archive.write(path, path.relative_to(snapshot))


def test_the_gitlab_pipeline_runs_every_script_line(tmp_path: Path, pg_server: PgServer, urls: dict[str, str],
                                                    python_bin: Path, wheel: Path,
                                                    gitlab_api: _ArtifactServer) -> None:
    production = pg_server.url_for(pg_server.create_database())
    project = _project(tmp_path, production, SAFE_CHANGE)
    _zip_snapshot(project.snapshot, gitlab_api.zip_path)
    pipeline = yaml.safe_load(GITLAB.read_text())
    jobs = {name: job for name, job in pipeline.items() if isinstance(job, dict) and "stage" in job}
    order = sorted(jobs, key=lambda name: pipeline["stages"].index(jobs[name]["stage"]))
    assert order == ["pgshift-lint", "pgshift-migration-tests", "pgshift-rehearse"]
    for name in order:
        job = jobs[name]
        script = _flatten(pipeline["default"]["before_script"]) + _flatten(job["script"])
        env = _environment(python_bin, wheel, {
            **pipeline["variables"], **job.get("variables", {}),
            "CI": "true", "GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "merge_request_event",
            "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main", "CI_DEFAULT_BRANCH": "main", "CI_PROJECT_ID": "42",
            "CI_JOB_TOKEN": "job-token", "CI_API_V4_URL": f"http://127.0.0.1:{gitlab_api.server_port}/api/v4",
        }, urls)
        done = _run_step("\n".join(script), cwd=project.checkout, env=env, what=name)
        assert done.returncode == 0, f"{name} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    quality = json.loads((project.checkout / "gl-code-quality.json").read_text())
    assert quality and all(issue["location"]["path"] == "migrations/003_order_note.sql" for issue in quality)
    assert "critical" not in {issue["severity"] for issue in quality}
    assert "order_note" in (project.checkout / "rehearsal.html").read_text()
    assert gitlab_api.requests == [
        "/api/v4/projects/42/jobs/artifacts/main/download?job=production-snapshot token=job-token"] * 2
