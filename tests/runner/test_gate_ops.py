"""The migrate gate judges SQL migrations after an .ops migration against the schema that migration
leaves (#13.5): the columns, tables and indexes its expand adds, and what its contract changed."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from tests.helpers import run_pgshift, write_migration

Conn = psycopg.Connection[tuple[object, ...]]

ADD_CODE = """operations:
  - add_column:
      table: items
      column: {name: code, type: "varchar(10)"}
  - create_table:
      table: events
      columns:
        - {name: id, type: bigint, primary_key: true}
        - {name: kind, type: "varchar(20)"}
"""


def _project(tmp_path: Path, conn: Conn) -> Path:
    conn.execute("CREATE TABLE items (id bigint PRIMARY KEY);"
                 "INSERT INTO items SELECT generate_series(1, 20)")
    # Judge these small tables as production-sized ones: a hazard is an error, not a note.
    (tmp_path / "pgshift.toml").write_text('migrations_dir = "migrations"\n[lint]\nsmall_table_rows = 0\n')
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "1_code.ops.yaml").write_text(ADD_CODE)
    return tmp_path


def _findings(result: object) -> list[dict[str, object]]:
    return list(json.loads(result.stdout)["lint"])  # type: ignore[attr-defined]


def test_a_column_an_ops_migration_adds_is_known_to_a_later_sql_migration(tmp_path: Path, db_url: str,
                                                                          conn: Conn) -> None:
    project = _project(tmp_path, conn)
    assert run_pgshift(["migrate", "--no-backup"], cwd=project, url=db_url).returncode == 0
    assert run_pgshift(["contract", "--no-backup"], cwd=project, url=db_url).returncode == 0
    # Widening varchar(10) to varchar(20) is metadata-only: safe once the linter knows the old type.
    write_migration(project / "migrations", "2", "widen", "ALTER TABLE items ALTER COLUMN code TYPE varchar(20);")
    result = run_pgshift(["migrate", "--json", "--no-backup"], cwd=project, url=db_url)
    assert result.returncode == 0, result.stderr
    assert [f for f in _findings(result) if f["rule"] == "PS010"] == []  # not "the old type ... is unknown"
    assert conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                        "'items'::regclass AND attname = 'code'").fetchone() == ("character varying(20)",)


def test_a_hazard_on_a_table_an_applied_ops_migration_created_is_judged_with_the_table_known(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    project = _project(tmp_path, conn)
    assert run_pgshift(["migrate", "--no-backup"], cwd=project, url=db_url).returncode == 0
    conn.execute("INSERT INTO events SELECT g, 'k' FROM generate_series(1, 20) g")
    # Shrinking varchar(20) to varchar(5) checks every row and rewrites the table under ACCESS EXCLUSIVE.
    write_migration(project / "migrations", "2", "shrink", "ALTER TABLE events ALTER COLUMN kind TYPE varchar(5);")
    refused = run_pgshift(["migrate", "--no-backup"], cwd=project, url=db_url)
    message = " ".join(refused.stderr.split())
    assert refused.returncode == 19, message
    assert "PS010 alter-column-type" in message and "the length limit shrinks" in message
    assert conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                        "'events'::regclass AND attname = 'kind'").fetchone() == ("character varying(20)",)


def test_a_table_a_pending_ops_migration_creates_is_new_and_empty_for_later_sql(tmp_path: Path, db_url: str,
                                                                                conn: Conn) -> None:
    project = _project(tmp_path, conn)
    write_migration(project / "migrations", "2", "index", "CREATE INDEX events_kind_idx ON events (kind);\n"
                    "ALTER TABLE events ALTER COLUMN kind TYPE varchar(40);")
    result = run_pgshift(["migrate", "--json", "--no-backup"], cwd=project, url=db_url)
    assert result.returncode == 0, result.stderr
    # blocks nobody (no one uses it yet), and its column is known (not "the old type ... is unknown")
    assert [f for f in _findings(result) if f["rule"] in ("PS001", "PS010")] == []
