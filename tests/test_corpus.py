"""The corpus (tests/corpus/): five real-shaped histories, taken as their own tools take them.

Each history is applied on a fresh database through the CLI with the lint gate on, rolled back
as far as its down parts allow (and refused, with the right exit code, where they do not),
applied again to the same catalog, adopted from the original tool's own history table on a
second database, and linted, with and without the (empty) database.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgshift.db.mirror import flyway_checksum
from pgshift.rehearsal import catalog
from tests.db.test_foreign_history import DBMATE_DDL, FLYWAY_DDL, GOLANG_MIGRATE_DDL, GOOSE_DDL_IDENTITY, PRISMA_DDL
from tests.helpers import run_pgshift

CORPUS = Path(__file__).parent / "corpus"
Conn = psycopg.Connection[tuple[object, ...]]


def _dbmate_rows(conn: Conn, project: Path, versions: list[str]) -> None:
    conn.execute(DBMATE_DDL)
    for v in versions:
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (v,))


def _golang_rows(conn: Conn, project: Path, versions: list[str]) -> None:
    conn.execute(GOLANG_MIGRATE_DDL)
    conn.execute("INSERT INTO schema_migrations VALUES (%s, false)", (int(versions[-1]),))


def _goose_rows(conn: Conn, project: Path, versions: list[str]) -> None:
    conn.execute(GOOSE_DDL_IDENTITY)
    conn.execute("INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true)")  # goose's bootstrap row
    for v in versions:
        conn.execute("INSERT INTO goose_db_version (version_id, is_applied) VALUES (%s, true)", (int(v),))


def _flyway_rows(conn: Conn, project: Path, versions: list[str]) -> None:
    conn.execute(FLYWAY_DDL.format(schema="public"))
    folder = project / "sql"
    scripts = {p.name: p for p in folder.rglob("*.sql")}
    for rank, v in enumerate(versions, start=1):
        if v.startswith("R__"):
            script = next(p for n, p in scripts.items() if n == f"{v}.sql")
            version, description = None, v[3:].replace("_", " ")
        else:
            pattern = "V" + re.escape(v).replace(r"\.", "[._]") + "__"
            script = next(p for n, p in scripts.items() if re.match(pattern, n))
            version, description = v, script.stem.split("__", 1)[1].replace("_", " ")
        conn.execute(
            "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum,"
            " installed_by, execution_time, success) VALUES (%s, %s, %s, 'SQL', %s, %s, 'app', 5, true)",
            (rank, version, description, str(script.relative_to(folder)), flyway_checksum(script.read_bytes())))


def _prisma_rows(conn: Conn, project: Path, versions: list[str]) -> None:
    conn.execute(PRISMA_DDL)
    folder = project / "prisma" / "migrations"
    for v in versions:
        name = next(p.name for p in folder.iterdir() if p.name.startswith(f"{v}_"))
        digest = hashlib.sha256((folder / name / "migration.sql").read_bytes()).hexdigest()
        conn.execute(
            "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at,"
            " applied_steps_count) VALUES (%s, %s, now(), %s, now(), 1)", (str(uuid.uuid4()), digest, name))


@dataclass(frozen=True)
class History:
    tool: str
    folder: str
    dir_args: tuple[str, ...]            # () when pgshift must find the folder from the project root
    applied: list[str]                   # what `migrate` applies on a fresh database, in order
    rollback_steps: int                  # how many down parts run before the first refusal
    refusal: int                         # exit code of the rollback one step further
    broken_down: list[str] = field(default_factory=list)  # files whose down part does not parse
    unusable: list[str] = field(default_factory=list)     # files the tool itself cannot run
    lint_exit: int = 1
    adopt_rows: Callable[[Conn, Path, list[str]], None] = _dbmate_rows


GOLANG = [str(v) for v in range(1, 11)]
DBMATE = ["20240105093000", "20240105094500", "20240112170000", "20240120081500", "20240125120000",
          "20240202120000", "20240202123000", "20240215100000", "20240310110000"]
GOOSE = [str(v) for v in range(1, 9)]
FLYWAY = ["1", "1.1", "2", "2.1", "3", "4", "R__library_views", "R__search_function"]
PRISMA = ["20240110120000", "20240118093000", "20240201101500", "20240215160000", "20240220080000",
          "20240305143000", "20240312090000", "20240401110000"]

HISTORIES = [
    # 10 and 9 roll back; 8's down file starts with a stray "- Drop indexes" line (exit 7).
    History("golang-migrate", "golang-migrate", ("--dir", "."), GOLANG, 2, 7,
            broken_down=["000008_task_comments.down.sql"], lint_exit=2, adopt_rows=_golang_rows),
    # The indented '-- migrate:down' is a comment to dbmate 2.36 too: that file is refused (exit 6) and
    # the rest applies; 4 down parts run (the enum value's is only a comment: a no-op), then the broken one.
    History("dbmate", "dbmate", ("--dir", "."), DBMATE, 4, 7,
            broken_down=["20240125120000_customer_notes.sql"], unusable=["20240501090000_customer_phone.sql"],
            lint_exit=2, adopt_rows=_dbmate_rows),
    # 8 and 7 roll back; 6 has no Down part (exit 11).
    History("goose", "goose", (), GOOSE, 2, 11, adopt_rows=_goose_rows),
    # Found through flyway.conf; repeatables are not rolled back. 4, 3 and 2.1 undo; U2 fails on the
    # server (the repeatable view open_loans depends on loans: exit 8) and its transaction rolls back.
    History("flyway", "flyway", (), FLYWAY, 3, 8, adopt_rows=_flyway_rows),
    # Found from the project root; Prisma has no down migrations (exit 11).
    History("prisma", "prisma", (), PRISMA, 0, 11, adopt_rows=_prisma_rows),
]


def _project(tmp_path: Path, history: History) -> Path:
    project = tmp_path / history.tool
    shutil.copytree(CORPUS / history.folder, project)
    return project


def _pgshift(project: Path, history: History, url: str, *args: str,
             env: dict[str, str] | None = None) -> tuple[int, str, str]:
    command = [args[0], *history.dir_args, *args[1:]]
    result = run_pgshift(command, cwd=project, url=url, env=env)
    return result.returncode, result.stdout, result.stderr


def _applied_versions(stdout: str) -> list[str]:
    return [step["version"] for step in json.loads(stdout)["applied"]]


def _fingerprint(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        snap = catalog.snapshot(conn)
    return catalog.fingerprint(snap)


def _migrate_fresh(project: Path, history: History, url: str, env: dict[str, str] | None = None) -> list[str]:
    """`migrate` as a user runs it: a file the tool itself cannot run stops the run before anything
    is applied, and its hint (`--to`) applies everything before that file."""
    code, out, err = _pgshift(project, history, url, "migrate", "--no-backup", "--json", env=env)
    if history.unusable:
        assert code == 6, err
        for name in history.unusable:
            assert name in err, err
        hint = re.search(r"`pgshift migrate --to (\S+)`", err)
        assert hint is not None, err
        code, out, err = _pgshift(project, history, url, "migrate", "--to", hint.group(1), "--no-backup",
                                  "--json", env=env)
    assert code == 0, err
    return _applied_versions(out)


@pytest.mark.parametrize("history", HISTORIES, ids=[h.tool for h in HISTORIES])
def test_history_applies_rolls_back_and_applies_again(tmp_path: Path, db_url: str, history: History) -> None:
    project = _project(tmp_path, history)
    assert _migrate_fresh(project, history, db_url) == history.applied
    applied_schema = _fingerprint(db_url)

    code, out, err = _pgshift(project, history, db_url, "status", "--json")
    assert code == 0, err
    status = json.loads(out)
    assert status["pending"] == [re.match(r"\d+", n).group(0) for n in history.unusable]  # type: ignore[union-attr]
    for name in [*history.broken_down, *history.unusable]:
        assert any(name in w for w in status["warnings"]), status["warnings"]

    if history.rollback_steps:
        code, _, err = _pgshift(project, history, db_url, "rollback", "--steps", str(history.rollback_steps))
        assert code == 0, err
    before_refusal = _fingerprint(db_url)
    code, _, err = _pgshift(project, history, db_url, "rollback")
    assert code == history.refusal, err
    assert _fingerprint(db_url) == before_refusal  # a refused or failed rollback changes nothing
    if code == 11:  # the hint says where a down part goes in this tool's format
        assert {"goose": "'-- +goose Down' section", "flyway": "undo script U<version>",
                "prisma": "Prisma migrations have no down part"}[history.tool] in " ".join(err.split()), err
    again = _migrate_fresh(project, history, db_url)
    versioned = [v for v in history.applied if not v.startswith("R__")]
    rolled = history.rollback_steps
    assert again == (versioned[len(versioned) - rolled:] if rolled else [])
    assert _fingerprint(db_url) == applied_schema


@pytest.mark.parametrize("history", HISTORIES, ids=[h.tool for h in HISTORIES])
def test_history_is_adopted_from_the_tools_own_table(tmp_path: Path, db_url: str, conn: Conn,
                                                    history: History) -> None:
    project = _project(tmp_path, history)
    # The schema as the original tool left it: applied by pgshift into a ledger that is then dropped.
    scratch = {"PGSHIFT_HISTORY_SCHEMA": "scratch_ledger"}
    assert _migrate_fresh(project, history, db_url, env=scratch) == history.applied
    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier("scratch_ledger")))
    history.adopt_rows(conn, project, history.applied)

    code, out, err = _pgshift(project, history, db_url, "adopt", "--from", history.tool, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["adopted"] == history.applied
    assert report["pending"] == [re.match(r"\d+", n).group(0) for n in history.unusable]  # type: ignore[union-attr]
    code, out, err = _pgshift(project, history, db_url, "status", "--json")
    assert code == 0, err
    status = json.loads(out)
    assert status["problems"] == []  # the adopted checksums are the files': nothing reads as edited
    assert status["pending"] == report["pending"]


@pytest.mark.parametrize("history", HISTORIES, ids=[h.tool for h in HISTORIES])
def test_history_lints_with_its_own_boundaries(tmp_path: Path, db_url: str, history: History) -> None:
    project = _project(tmp_path, history)
    code, out, err = _pgshift(project, history, db_url, "lint", "--json")
    assert code == history.lint_exit, err
    report = json.loads(out)
    broken = sorted(Path(p["file"]).name for p in report["parse_errors"])
    assert broken == sorted([*history.broken_down, *history.unusable])
    rules = {f["rule"] for f in report["findings"]}
    # BEGIN / COMMIT the tool runs as transaction boundaries are not findings; nothing here builds an
    # index CONCURRENTLY inside a transaction.
    assert not rules & {"PS055", "PS058", "PS004"}, rules
    # Against the (empty) database, every table the history touches is created by the history
    # itself: new and empty, so nothing is an error, as for migrate's gate.
    code, out, err = _pgshift(project, history, db_url, "lint", "--json", "--database", db_url)
    live = json.loads(out)
    assert [f for f in live["findings"] if f["severity"] == "error"] == []
    assert code == (2 if history.lint_exit == 2 else 0), err
