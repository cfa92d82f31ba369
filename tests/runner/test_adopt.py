"""`pgshift adopt`: switch from another tool without re-running what it applied."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg

from pgshift.migrations.formats.flyway import flyway_checksum
from tests.db.test_foreign_history import FLYWAY_DDL, GOLANG_MIGRATE_DDL, GOOSE_DDL_IDENTITY
from tests.helpers import run_pgshift

SAMPLES = Path(__file__).parent.parent / "migrations" / "samples"
Conn = psycopg.Connection[tuple[object, ...]]


def _copy(sample: str, tmp_path: Path) -> Path:
    target = tmp_path / sample
    shutil.copytree(SAMPLES / sample, target)
    return target


def test_adopt_goose_history_then_migrate_runs_only_the_rest(tmp_path: Path, db_url: str, conn: Conn) -> None:
    project = _copy("goose", tmp_path)
    # goose applied 1 and 2 (and 3 was applied then rolled back: its latest row says not applied).
    conn.execute(GOOSE_DDL_IDENTITY)
    conn.execute("INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), (1, true), (2, true), "
                 "(3, true), (3, false)")
    # What goose's migrations 1 and 2 created:
    first = run_pgshift(["migrate", "--to", "2"], cwd=project, url=db_url, env={"PGSHIFT_HISTORY_SCHEMA": "scratch"})
    assert first.returncode == 0, first.stderr
    conn.execute("DROP SCHEMA scratch CASCADE")

    adopted = run_pgshift(["adopt", "--from", "goose", "--json"], cwd=project, url=db_url)
    assert adopted.returncode == 0, adopted.stderr
    report = json.loads(adopted.stdout)
    assert report["adopted"] == ["1", "2"]
    assert report["pending"] == ["3", "10"]

    migrated = run_pgshift(["migrate", "--json"], cwd=project, url=db_url)
    assert migrated.returncode == 0, migrated.stderr
    assert [a["version"] for a in json.loads(migrated.stdout)["applied"]] == ["3", "10"]
    again = run_pgshift(["adopt", "--from", "goose", "--json"], cwd=project, url=db_url)
    assert json.loads(again.stdout)["already"] == ["1", "2"]


def test_adopt_golang_migrate_current_version_covers_older_ones(tmp_path: Path, db_url: str, conn: Conn) -> None:
    project = _copy("golang_migrate", tmp_path)
    conn.execute(GOLANG_MIGRATE_DDL)
    conn.execute("INSERT INTO schema_migrations VALUES (2, false)")
    adopted = run_pgshift(["adopt", "--from", "golang-migrate", "--json"], cwd=project, url=db_url)
    assert adopted.returncode == 0, adopted.stderr
    assert json.loads(adopted.stdout)["adopted"] == ["1", "2"]
    status = json.loads(run_pgshift(["status", "--json"], cwd=project, url=db_url).stdout)
    assert status["pending"] == ["10"]


def test_adopt_refuses_a_dirty_history(tmp_path: Path, db_url: str, conn: Conn) -> None:
    project = _copy("golang_migrate", tmp_path)
    conn.execute(GOLANG_MIGRATE_DDL)
    conn.execute("INSERT INTO schema_migrations VALUES (2, true)")
    result = run_pgshift(["adopt", "--from", "golang-migrate"], cwd=project, url=db_url)
    assert result.returncode == 17
    assert "failed or dirty" in result.stderr
    assert conn.execute("SELECT to_regclass('pgshift.migrations') IS NULL "
                        "OR NOT EXISTS (SELECT FROM pgshift.migrations)").fetchone() == (True,)


def test_adopt_without_the_tools_table_names_it(tmp_path: Path, db_url: str) -> None:
    project = _copy("goose", tmp_path)
    result = run_pgshift(["adopt", "--from", "goose"], cwd=project, url=db_url)
    assert result.returncode == 17
    assert "goose_db_version" in result.stderr


FLYWAY_FILES = {
    "V1__init.sql": "CREATE TABLE users (id int PRIMARY KEY, email text);\n",
    "V2__backfill_users.sql": "INSERT INTO users VALUES (1, 'a@example.com');\n",
    "R__users_view.sql": "CREATE OR REPLACE VIEW users_view AS\r\n  SELECT id FROM users;\r\n",
    "R__users_email_view.sql": "CREATE OR REPLACE VIEW users_email_view AS SELECT email, id FROM users;\n",
}


def _flyway_project(tmp_path: Path, conn: Conn) -> Path:
    """The folder and the history Flyway left: V2 ran as a Java migration, and one repeatable was
    edited after Flyway last ran it."""
    folder = tmp_path / "db" / "migration"
    folder.mkdir(parents=True)
    for name, text in FLYWAY_FILES.items():
        (folder / name).write_bytes(text.encode())
    (tmp_path / "pgshift.toml").write_text('migrations_dir = "db/migration"\nformat = "flyway"\n')
    conn.execute(FLYWAY_DDL.format(schema="public"))
    conn.execute("CREATE TABLE users (id int PRIMARY KEY, email text)")
    conn.execute("CREATE VIEW users_view AS SELECT id FROM users")
    conn.execute("CREATE VIEW users_email_view AS SELECT email FROM users")
    ran_before_edit = "CREATE OR REPLACE VIEW users_email_view AS SELECT email FROM users;\n"
    rows = [
        (1, "1", "init", "SQL", "V1__init.sql", flyway_checksum(FLYWAY_FILES["V1__init.sql"])),
        (2, "2", "backfill users", "JDBC", "db.migration.V2__backfill_users", None),
        # Flyway read these files with LF line endings; the CRLF copy here has the same checksum.
        (3, None, "users view", "SQL", "R__users_view.sql",
         flyway_checksum(FLYWAY_FILES["R__users_view.sql"].replace("\r\n", "\n"))),
        (4, None, "users email view", "SQL", "R__users_email_view.sql", flyway_checksum(ran_before_edit)),
    ]
    with conn.cursor() as cur:
        cur.executemany(
            'INSERT INTO flyway_schema_history ("installed_rank", "version", "description", "type", "script", '
            '"checksum", "installed_by", "execution_time", "success") VALUES (%s, %s, %s, %s, %s, %s, '
            "'deploy', 12, true)", rows)
    return tmp_path


def test_adopt_flyway_refuses_an_sql_file_for_a_version_flyway_ran_as_java(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    project = _flyway_project(tmp_path, conn)
    result = run_pgshift(["adopt", "--from", "flyway"], cwd=project, url=db_url)
    message = " ".join(result.stderr.split())
    assert result.returncode == 17, result.stderr
    assert "version 2 ('backfill users') was applied as a JDBC migration" in message
    assert "V2__backfill_users.sql is an SQL file of that version" in message
    assert "nothing was adopted" in message and "give it a new version" in message
    assert conn.execute("SELECT to_regclass('pgshift.migrations') IS NULL "
                        "OR NOT EXISTS (SELECT FROM pgshift.migrations)").fetchone() == (True,)

    # The hint: the Java migration did the work, so the SQL file goes; adopt then goes through.
    (project / "db" / "migration" / "V2__backfill_users.sql").unlink()
    adopted = run_pgshift(["adopt", "--from", "flyway", "--json"], cwd=project, url=db_url)
    assert adopted.returncode == 0, adopted.stderr
    report = json.loads(adopted.stdout)
    assert report["adopted"] == ["1", "R__users_view"]
    assert report["unknown"] == ["2"]  # the Java migration has no file here


def test_adopt_flyway_leaves_a_repeatable_edited_since_flyway_ran_it_pending(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    project = _flyway_project(tmp_path, conn)
    (project / "db" / "migration" / "V2__backfill_users.sql").unlink()
    adopted = run_pgshift(["adopt", "--from", "flyway"], cwd=project, url=db_url)
    assert adopted.returncode == 0, adopted.stderr
    message = " ".join(adopted.stderr.split())
    edited = flyway_checksum(FLYWAY_FILES["R__users_email_view.sql"])
    assert (f"R__users_email_view.sql: the repeatable migration R__users_email_view changed since Flyway last ran "
            f"it (Flyway checksum {edited} now,") in message
    assert "the next `pgshift migrate` runs it again" in message
    report = json.loads(run_pgshift(["adopt", "--from", "flyway", "--json"], cwd=project, url=db_url).stdout)
    assert report["changed"] == ["R__users_email_view"] and report["pending"] == ["R__users_email_view"]
    assert report["already"] == ["1", "R__users_view"]

    migrated = run_pgshift(["migrate", "--json", "--no-backup"], cwd=project, url=db_url)
    assert migrated.returncode == 0, migrated.stderr
    assert [a["version"] for a in json.loads(migrated.stdout)["applied"]] == ["R__users_email_view"]
    columns = conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'users_email_view'::regclass "
                           "ORDER BY attnum").fetchall()
    assert columns == [("email",), ("id",)]  # the edited view, run again


def test_adopt_flyway_counts_versions_at_or_below_its_baseline_as_applied(
    tmp_path: Path, db_url: str, conn: Conn
) -> None:
    from tests.db.test_foreign_history import FLYWAY_DDL

    folder = tmp_path / "sql"
    folder.mkdir()
    for v in range(1, 8):
        (folder / f"V{v}__t{v}.sql").write_text(f"CREATE TABLE t{v} (id int);\n")
    (tmp_path / "pgshift.toml").write_text('migrations_dir = "sql"\n')
    # The database Flyway was baselined on at 5 (t1..t5 existed before Flyway), then it applied 6.
    conn.execute(" ".join(f"CREATE TABLE t{v} (id int);" for v in range(1, 7)))
    conn.execute(FLYWAY_DDL.format(schema="public"))
    conn.execute(
        "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum, "
        "installed_by, execution_time, success) VALUES "
        "(1, '5', '<< Flyway Baseline >>', 'BASELINE', '<< Flyway Baseline >>', NULL, 'app', 0, true), "
        "(2, '6', 't6', 'SQL', 'V6__t6.sql', 12345, 'app', 3, true)")

    adopted = run_pgshift(["adopt", "--from", "flyway", "--json"], cwd=tmp_path, url=db_url)
    assert adopted.returncode == 0, adopted.stderr
    report = json.loads(adopted.stdout)
    # Before: pending was ["1", "2", "3", "4", "7"], and migrate then failed creating t1 again.
    assert report["pending"] == ["7"] and report["adopted"] == ["6"] and report["unknown"] == []
    assert report["baseline"] == "5" and report["below_baseline"] == ["1", "2", "3", "4", "5"]
    text = run_pgshift(["adopt", "--from", "flyway"], cwd=tmp_path, url=db_url)
    assert "flyway's baseline 5 recorded as pgshift's baseline: 5 file(s) at or below it" in text.stdout

    status = run_pgshift(["status", "--json"], cwd=tmp_path, url=db_url)
    states = {m["version"]: m["state"] for m in json.loads(status.stdout)["migrations"]}
    assert states == {"1": "baseline", "2": "baseline", "3": "baseline", "4": "baseline", "5": "baseline",
                      "6": "applied", "7": "pending"}, status.stdout
    migrated = run_pgshift(["migrate"], cwd=tmp_path, url=db_url)
    assert migrated.returncode == 0, migrated.stderr
    assert conn.execute("SELECT to_regclass('t7') IS NOT NULL").fetchone() == (True,)
