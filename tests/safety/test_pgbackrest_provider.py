"""backup.provider = "pgbackrest": backup.policy satisfied by a real pgBackRest repository's completed backup
instead of a pg_dump, refused when the stanza has none or only an old one, reported by `pgshift check`, and
the restore check (restore, start, query, stop, remove)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PgServer
from tests.helpers import run_pgshift, write_migration
from tests.pgbackrest import STANZA, BackRest, backrest  # noqa: F401

SUPPRESS_DROP = "-- pgshift:ignore drop-table -- the app stopped reading it two releases ago"


@pytest.fixture(scope="module")
def backed_up(backrest: BackRest) -> BackRest:  # noqa: F811
    """The repository after one full backup (taken once for the module)."""
    backrest.backup()
    return backrest


def _project(tmp_path: Path, config: Path, *, extra: str = "", stanza: str = STANZA) -> Path:
    (tmp_path / "migrations").mkdir(exist_ok=True)
    (tmp_path / "pgshift.toml").write_text(
        f'[backup]\nprovider = "pgbackrest"\npgbackrest_stanza = "{stanza}"\npgbackrest_config = "{config}"\n'
        f'directory = "backups"\n{extra}')
    return tmp_path


def _database_with_doomed_table(backrest: BackRest) -> str:  # noqa: F811
    name = backrest.create_database()
    with psycopg.connect(backrest.url(name), autocommit=True) as conn:
        conn.execute("CREATE TABLE old_stuff (id bigint PRIMARY KEY); INSERT INTO old_stuff VALUES (1), (2)")
    return name


def _tables(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {str(r[0]) for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def _scratch(backrest: BackRest, tmp_path: Path) -> Path:  # noqa: F811
    """A folder the cluster's user can reach (pytest's own tmp_path is private to root)."""
    return backrest.root / f"scratch-{tmp_path.name[:12]}"


def _label(backrest: BackRest) -> str:  # noqa: F811
    info = json.loads(backrest.run("--output=json", "info"))
    return str(info[0]["backup"][-1]["label"])


def test_a_fresh_backup_satisfies_the_policy_without_pg_dump(backed_up: BackRest, tmp_path: Path) -> None:
    db = _database_with_doomed_table(backed_up)
    project = _project(tmp_path, backed_up.config)
    write_migration(project / "migrations", "1", "drop", f"{SUPPRESS_DROP}\nDROP TABLE old_stuff;")
    result = run_pgshift(["migrate", "--json"], cwd=project, url=backed_up.url(db))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backup"] == f"pgbackrest:{STANZA}/{_label(backed_up)}"
    assert "old_stuff" not in _tables(backed_up.url(db))
    assert not (project / "backups").exists()  # no pg_dump was taken


def test_a_stanza_without_any_backup_is_refused(backrest: BackRest, tmp_path: Path) -> None:  # noqa: F811
    db = _database_with_doomed_table(backrest)
    project = _project(tmp_path, backrest.empty_repository("empty"))
    write_migration(project / "migrations", "1", "drop", f"{SUPPRESS_DROP}\nDROP TABLE old_stuff;")
    refused = run_pgshift(["migrate"], cwd=project, url=backrest.url(db))
    message = " ".join(refused.stderr.split())
    assert refused.returncode == 37, refused.stderr
    assert "error (no-recent-backup)" in message and "1 drop drops or truncates data" in message
    assert f"pgBackRest stanza '{STANZA}'" in message and "has no completed backup (no valid backups)" in message
    assert f"--config={backrest.root / 'empty.conf'} --stanza={STANZA} backup`" in message
    assert "old_stuff" in _tables(backrest.url(db))


def test_an_unknown_stanza_is_refused_saying_so(backed_up: BackRest, tmp_path: Path) -> None:
    db = _database_with_doomed_table(backed_up)
    project = _project(tmp_path, backed_up.config, stanza="nosuch")
    write_migration(project / "migrations", "1", "drop", f"{SUPPRESS_DROP}\nDROP TABLE old_stuff;")
    refused = run_pgshift(["migrate"], cwd=project, url=backed_up.url(db))
    assert refused.returncode == 37, refused.stderr
    assert "stanza 'nosuch'" in refused.stderr and "missing stanza path" in refused.stderr
    assert "old_stuff" in _tables(backed_up.url(db))


def test_a_backup_older_than_max_age_is_refused(backed_up: BackRest, tmp_path: Path) -> None:
    db = _database_with_doomed_table(backed_up)
    project = _project(tmp_path, backed_up.config, extra='max_age = "1s"\n')
    write_migration(project / "migrations", "1", "drop", f"{SUPPRESS_DROP}\nDROP TABLE old_stuff;")
    time.sleep(1.5)  # the module's backup is now older than a second
    refused = run_pgshift(["migrate"], cwd=project, url=backed_up.url(db))
    message = " ".join(refused.stderr.split())
    assert refused.returncode == 37, refused.stderr
    assert f"the newest completed backup in pgBackRest stanza '{STANZA}'" in message
    assert f"full backup {_label(backed_up)}" in message and "older than backup.max_age = 1s" in message
    assert "old_stuff" in _tables(backed_up.url(db))
    # --no-backup accepts the risk, as the hint says.
    accepted = run_pgshift(["migrate", "--no-backup"], cwd=project, url=backed_up.url(db))
    assert accepted.returncode == 0, accepted.stderr
    assert "old_stuff" not in _tables(backed_up.url(db))


def test_a_migration_that_drops_nothing_needs_no_backup(backrest: BackRest, tmp_path: Path) -> None:  # noqa: F811
    db = backrest.create_database()
    project = _project(tmp_path, backrest.empty_repository("unused"))
    write_migration(project / "migrations", "1", "add", "CREATE TABLE fresh (id bigint PRIMARY KEY);")
    result = run_pgshift(["migrate"], cwd=project, url=backrest.url(db))
    assert result.returncode == 0, result.stderr
    always = project / "pgshift.toml"
    always.write_text(always.read_text() + 'policy = "always"\n')
    write_migration(project / "migrations", "2", "add", "CREATE TABLE fresher (id bigint PRIMARY KEY);")
    refused = run_pgshift(["migrate"], cwd=project, url=backrest.url(db))
    assert refused.returncode == 37 and "backup.policy = 'always' asks for a backup" in refused.stderr


def test_backups_of_another_cluster_do_not_count(backed_up: BackRest, tmp_path: Path, db_url: str,
                                                 conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """The stanza is this test repository's cluster; db_url is on the suite's main cluster."""
    conn.execute("CREATE TABLE old_stuff (id bigint PRIMARY KEY)")
    project = _project(tmp_path, backed_up.config)
    write_migration(project / "migrations", "1", "drop", f"{SUPPRESS_DROP}\nDROP TABLE old_stuff;")
    refused = run_pgshift(["migrate"], cwd=project, url=db_url)
    assert refused.returncode == 37, refused.stderr
    assert "has backups only of another cluster (system identifier" in " ".join(refused.stderr.split())


def test_check_reports_the_provider_backup(backed_up: BackRest, tmp_path: Path) -> None:
    db = backed_up.create_database()
    project = _project(tmp_path, backed_up.config)
    result = run_pgshift(["check", "--json"], cwd=project, url=backed_up.url(db))
    item = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "recent verified backup")
    assert item["status"] == "passed", item
    assert item["value"].startswith(f"pgbackrest:{STANZA}/{_label(backed_up)}: full backup")
    (project / "pgshift.toml").write_text((project / "pgshift.toml").read_text() + 'max_age = "1s"\n')
    time.sleep(1.5)
    stale = run_pgshift(["check", "--json"], cwd=project, url=backed_up.url(db))
    item = next(c for c in json.loads(stale.stdout)["checks"] if c["name"] == "recent verified backup")
    assert item["status"] == "failed" and "older than backup.max_age = 1s" in item["detail"][0], item
    assert stale.returncode != 0


def test_restore_check_restores_starts_queries_and_removes(backrest: BackRest, tmp_path: Path) -> None:  # noqa: F811
    db = _database_with_doomed_table(backrest)
    with psycopg.connect(backrest.url(db), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (id int); CREATE TABLE kept_too (id int)")
    backrest.backup()  # holds the three tables
    scratch = _scratch(backrest, tmp_path)
    project = _project(tmp_path, backrest.config,
                       extra=f'restore_check = true\nrestore_check_directory = "{scratch}"\n')
    write_migration(project / "migrations", "1", "drop", f"{SUPPRESS_DROP}\nDROP TABLE old_stuff;")
    with psycopg.connect(backrest.url(db), autocommit=True) as conn:
        conn.execute("CREATE TABLE after_backup (id int)")  # not in the backup: the count proves which server answered
    result = run_pgshift(["migrate"], cwd=project, url=backrest.url(db))
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, said
    assert f"restore check of pgbackrest:{STANZA}/{_label(backrest)} passed" in said
    assert f"database {db} answered (3 table(s))" in said
    assert scratch.is_dir() and list(scratch.iterdir()) == []  # the scratch server was stopped and removed
    assert "old_stuff" not in _tables(backrest.url(db))
    # The same (immutable) backup is not restored again: the ledger recorded the check.
    write_migration(project / "migrations", "2", "drop", f"{SUPPRESS_DROP}\nDROP TABLE kept;")
    again = run_pgshift(["migrate"], cwd=project, url=backrest.url(db))
    said = " ".join((again.stdout + again.stderr).split())
    assert again.returncode == 0, said
    assert f"restore check of pgbackrest:{STANZA}/{_label(backrest)} already passed at" in said
    assert "(recorded in the history ledger); not repeated" in said and "answered" not in said


def test_a_failing_restore_check_refuses(backrest: BackRest, tmp_path: Path) -> None:  # noqa: F811
    """The role of database_url was created after the newest backup: the restored server does not know it."""
    db = _database_with_doomed_table(backrest)
    backrest.backup()
    with psycopg.connect(backrest.url(db), autocommit=True) as conn:
        conn.execute("CREATE ROLE late_role LOGIN SUPERUSER")
    scratch = _scratch(backrest, tmp_path)
    project = _project(tmp_path, backrest.config,
                       extra=f'restore_check = true\nrestore_check_directory = "{scratch}"\n')
    write_migration(project / "migrations", "1", "drop", f"{SUPPRESS_DROP}\nDROP TABLE old_stuff;")
    url = backrest.url(db) + "&user=late_role"
    refused = run_pgshift(["migrate"], cwd=project, url=url)
    message = " ".join(refused.stderr.split())
    assert refused.returncode == 36, message
    assert "error (backup-provider)" in message and f"could not query database {db}" in message
    assert 'role "late_role" does not exist' in message
    assert list(scratch.iterdir()) == []
    assert "old_stuff" in _tables(backrest.url(db))


def test_pgbackrest_not_installed_names_the_setting(backrest: BackRest, tmp_path: Path) -> None:  # noqa: F811
    db = _database_with_doomed_table(backrest)
    project = _project(tmp_path, backrest.config)
    write_migration(project / "migrations", "1", "drop", f"{SUPPRESS_DROP}\nDROP TABLE old_stuff;")
    refused = run_pgshift(["migrate"], cwd=project, url=backrest.url(db), env={"PATH": str(tmp_path / "nothing")})
    message = " ".join(refused.stderr.split())
    assert refused.returncode == 36, message
    assert "pgBackRest is not installed" in message and "(backup.pgbackrest_command) on PATH" in message
    assert "apt-get install pgbackrest" in message
    assert "old_stuff" in _tables(backrest.url(db))


@pytest.mark.parametrize(("toml", "expected"), [
    ('[backup]\nprovider = "pgbackrest"\n', 'backup.provider = "pgbackrest" in {file} needs backup.pgbackrest_stanza'),
    ('[backup]\nprovider = "walg"\n', "backup.provider in {file} must be one of pg_dump, pgbackrest, not 'walg'"),
    ('[backup]\nprovider = "pgbackrest"\npgbackrest_stanza = "main"\npgbackrest_repo = 0\n',
     "backup.pgbackrest_repo in {file} must be a pgBackRest repository number from 1 to 256"),
    ('[backup]\nrestore_check = "yes"\n', "backup.restore_check in {file} must be true or false"),
])
def test_settings_are_validated_naming_key_and_file(tmp_path: Path, toml: str, expected: str,
                                                    pg_server: PgServer) -> None:
    (tmp_path / "pgshift.toml").write_text(toml)
    (tmp_path / "migrations").mkdir()
    result = run_pgshift(["check"], cwd=tmp_path, url=pg_server.admin_url)
    assert result.returncode == 3, result.stderr
    assert expected.format(file=tmp_path / "pgshift.toml") in " ".join(result.stderr.split())
