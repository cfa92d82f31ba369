"""`pgshift rehearse --targets FILE`, and the HTML summary of `--targets` runs (`--html`)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tests.fleet.conftest import Fleet, Member
from tests.helpers import run_pgshift, write_migration


def _project(root: Path, targets: str) -> Path:
    folder = root / "migrations"
    write_migration(folder, "1", "items", "CREATE TABLE items (id bigint PRIMARY KEY, name text);", "DROP TABLE items;")
    write_migration(folder, "2", "items_name", "CREATE INDEX items_name ON items (name);", "DROP INDEX items_name;")
    (root / "pgshift.toml").write_text(f'migrations_dir = "migrations"\n[targets]\n{targets}')
    return root


def _password(url: str) -> str:
    return unquote(urlsplit(url).password or "")


def _databases(member: Member) -> list[str]:
    with member.connect() as conn:
        return [str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()]


def _applied_tables(member: Member) -> list[str]:
    with member.connect() as conn:
        return [str(r[0]) for r in conn.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND "
                                                "relnamespace = 'public'::regnamespace").fetchall()]


def test_rehearse_on_every_target_and_a_failing_one_stops_the_rest(tmp_path: Path, fleet: Fleet) -> None:
    project = _project(tmp_path, "canary = 1\nparallel = 3\nmax_failures = 1\n")
    members = fleet.create(20)
    before = {m.server.admin_url: set(_databases(m)) for m in members[:2]}
    bad = members[5]
    with bad.connect() as conn:
        conn.execute("CREATE TABLE items (legacy int)")  # migration 1 fails on this target's clone
    targets = fleet.write(project / "targets.txt", members)

    run = run_pgshift(["rehearse", "--targets", str(targets), "--json", "--html", "rehearse.html"], cwd=project,
                      timeout=900)
    assert run.returncode == 31, run.stderr
    report = json.loads(run.stdout)
    rows = {t["target"]: t for t in report["targets"]}
    assert report["command"] == "rehearse" and report["counts"] == {"passed": 19, "failed": 1}
    assert rows[bad.dbname]["result"] == "failed" and 'relation "items" already exists' in rows[bad.dbname]["error"]
    assert all(t["applied"] == 2 for t in report["targets"])  # migrations rehearsed on each clone
    assert rows[members[0].dbname]["canary"]
    assert "1 of 20 target(s) failed" in run.stderr and "interrupted ones resume" not in run.stderr
    for m in members:  # the databases themselves are untouched, and no clone is left behind
        assert _applied_tables(m) == (["items"] if m is bad else [])
    for m in members[:2]:
        assert set(_databases(m)) == before[m.server.admin_url]
    page = (project / "rehearse.html").read_text()
    assert "pgshift rehearse --targets" in page
    for m in members:
        assert f"<td>{m.dbname}" in page and _password(m.url) not in page + run.stdout + run.stderr


def test_migrate_and_status_write_the_summary_as_html(tmp_path: Path, fleet: Fleet) -> None:
    project = _project(tmp_path, "parallel = 2\nmax_failures = 5\n")
    members = fleet.create(4)
    with members[1].connect() as conn:
        conn.execute("CREATE TABLE items (legacy int)")
    targets = fleet.write(project / "targets.txt", members, named=True)

    run = run_pgshift(["migrate", "--targets", str(targets), "--html", "migrate.html"], cwd=project)
    assert run.returncode == 31, run.stderr
    page = (project / "migrate.html").read_text()
    assert "<h1>pgshift migrate --targets</h1>" in page and "class='verdict fail'" in page
    for m in members:
        assert f"<td>{m.dbname}" in page and _password(m.url) not in page
    row = next(line for line in page.splitlines() if f"<td>{members[1].dbname}" in line)
    assert "failed" in row and "already exists" in row
    assert page.count("<td>applied</td>") == 3

    status = run_pgshift(["status", "--targets", str(targets), "--html", "status.html"], cwd=project)
    assert status.returncode == 0, status.stderr
    page = (project / "status.html").read_text()
    assert page.count("<td>up to date</td>") == 3 and page.count("<td class='bad'>interrupted</td>") == 1

    assert "class='verdict pass'" in page
    alone = run_pgshift(["status", "--html", "x.html"], cwd=project, url=members[0].url)
    assert alone.returncode == 2 and "--html of `pgshift status` writes the --targets summary" in alone.stderr
