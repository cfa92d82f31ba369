"""A large data migration (8 MB, ~2,000 statements of ~4 kB, generated at test time) loads, lints
and applies with every statement's position exact, holding its text but no parse trees of all
statements, and with work that grows linearly. bench/large_files measures 10 and 50 MB files.

Work is counted (characters given to the tree-building parser, bytes hashed) and memory traced,
rather than timed, so a busy machine cannot make these tests flaky."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from pglast import parser

from pgshift import api
from pgshift.config import Settings
from pgshift.errors import MigrationFailed, SqlParseError
from pgshift.lint.engine import lint_migrations
from pgshift.migrations.loader import load_migrations
from pgshift.runner.gate import MigrateChecks
from tests.bench.loader import load_bench
from tests.conftest import PgServer

MB = 1_000_000
SIZE = 8 * MB


def _gen() -> ModuleType:
    return load_bench("large_files/gen.py", "pgshift_bench_large_files_gen")


def _expected(text: str) -> tuple[int, int]:
    """(statements of the up part, file line of its last INSERT), counted without the splitter."""
    up = text.split("-- pgshift:down")[0]
    statements = up.count("INSERT INTO seed_customers") + up.count("CREATE OR REPLACE FUNCTION") + 1
    return statements, up[: up.rindex("INSERT INTO seed_customers")].count("\n") + 1


@pytest.fixture(scope="module")
def large_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("large") / "migrations"
    _gen().write(folder, "native", SIZE)
    return folder


class Traced:
    current = 0
    peak = 0


@contextmanager
def traced() -> Iterator[Traced]:
    """Memory allocated inside the block: still held at its end (current) and at most (peak)."""
    result = Traced()
    tracemalloc.start()
    try:
        yield result
        result.current, result.peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()


def test_a_large_file_loads_and_lints_without_holding_parse_trees(large_folder: Path) -> None:
    text = next(large_folder.iterdir()).read_text()
    statements, last_insert_line = _expected(text)
    with traced() as loading:
        _, migrations = load_migrations(large_folder)
    up = migrations[0].up
    assert len(up) == statements > 1500
    assert up[-1].line == last_insert_line and up[-1].column == 1 and up[-1].sql.startswith("INSERT INTO")
    # What stays is the statements' text (about the file's size), not a tree of every statement.
    assert loading.current < 1.5 * SIZE, loading.current
    assert loading.peak < 8 * SIZE, loading.peak

    with traced() as linting:
        report = lint_migrations(migrations)
    assert report.statements == statements
    assert not report.parse_errors and not report.active
    # A few batches of trees at a time (256 kB of SQL each), whatever the size of the file.
    assert linting.peak < 48 * MB, linting.peak


@pytest.mark.parametrize("fmt", ["native", "dbmate", "golang-migrate", "goose", "flyway", "prisma"])
def test_a_large_file_loads_holding_neither_its_text_nor_its_statements(fmt: str, tmp_path: Path) -> None:
    path = _gen().write(tmp_path, fmt, 4 * MB)
    size = path.stat().st_size
    load_migrations(tmp_path)  # imports and format detection happen outside the trace
    with traced() as loading:
        _, migrations = load_migrations(tmp_path)
    assert len(migrations[0].up) > 1000 and (migrations[0].down is not None or fmt == "prisma")
    # Read in pieces and split a chunk at a time; a list of its lines and the up part joined back
    # from them were three more copies (peak 4.8-5.8x the file), the text and statements two.
    assert loading.peak < 2 * size, loading.peak / size
    # What stays is where each statement starts and ends, not its text (goose, Flyway and Prisma
    # kept every statement: about the file's size).
    assert loading.current < 0.05 * size, loading.current / size


def test_a_parse_error_deep_in_a_large_file_names_its_line(tmp_path: Path, large_folder: Path) -> None:
    text = next(large_folder.iterdir()).read_text()
    at = text.rindex("INSERT INTO seed_customers")
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "20240101000000_seed.sql").write_text(text[:at] + "INSERT INTO seed_customers VALUES (1,, 2);\n"
                                                     + text[at:])
    # One broken file loads as a migration carrying its error (see files.per_file).
    _, [migration] = load_migrations(folder)
    assert isinstance(migration.error, SqlParseError), migration.error
    assert (migration.error.line, migration.error.column) == (text[:at].count("\n") + 1, 38)


@contextmanager
def counting_tree_parses(monkeypatch: pytest.MonkeyPatch, function: str = "parse_sql") -> Iterator[list[int]]:
    """Characters given to pglast's parse_sql, which builds a Python object per node (the slow,
    memory-hungry kind of parse; splitting and linting use the C parser's output directly), or
    to parse_sql_json (the trees the linter reads)."""
    parsed = [0]
    real: Callable[[str], Any] = getattr(parser, function)

    def counting(sql: str) -> Any:
        parsed[0] += len(sql)
        return real(sql)

    monkeypatch.setattr(parser, function, counting)
    yield parsed


@pytest.mark.parametrize("fmt", ["native", "dbmate", "golang-migrate"])
def test_every_format_loads_a_large_file_building_no_tree_per_row(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _gen().write(tmp_path, fmt, MB)
    with counting_tree_parses(monkeypatch) as parsed:
        found, migrations = load_migrations(tmp_path)
    assert found == fmt and len(migrations[0].up) > 250
    assert parsed[0] < 0.01 * MB, parsed[0]


def test_migrate_applies_a_large_file_building_no_tree_per_row(
    large_folder: Path, db_url: str, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = next(large_folder.iterdir()).read_text()
    statements, _ = _expected(text)
    settings = Settings(database_url=db_url, base_dir=large_folder.parent, migrations_dir="migrations")
    with counting_tree_parses(monkeypatch) as parsed, traced() as memory:
        report = api.migrate(settings, checks=MigrateChecks(backup=False))
    assert [(r.version, r.mode, r.statements) for r in report.applied] == [
        ("20240101000000", "transaction", statements)]
    inserts = text.split("-- pgshift:down")[0].count("INSERT INTO seed_customers")
    assert conn.execute("SELECT count(*) FROM seed_customers").fetchone() == (inserts * 40,)
    # Only the few statements that may be transaction control or need autocommit (here the
    # CREATEs) are parsed into trees; none of the INSERTs is.
    assert parsed[0] < 0.01 * SIZE, parsed[0]
    assert memory.peak < 8 * SIZE, memory.peak

    # The next migrate lints a new migration after replaying the applied ones into the schema
    # model: their INSERTs cannot change it, so they are not parsed again.
    (large_folder / "20240102000000_next.sql").write_text("-- pgshift:up\nALTER TABLE seed_customers ADD note text;\n")
    try:
        with counting_tree_parses(monkeypatch, "parse_sql_json") as parsed_json:
            report = api.migrate(settings, checks=MigrateChecks(backup=False))
    finally:
        (large_folder / "20240102000000_next.sql").unlink()
    assert [r.version for r in report.applied] == ["20240102000000"]
    assert parsed_json[0] < 0.01 * SIZE, parsed_json[0]


class CountingSha256:
    """hashlib.sha256 that counts the bytes it hashes."""

    hashed = 0

    def __init__(self, data: bytes = b"", *, inner: Any = None) -> None:
        self.inner = inner or hashlib.new("sha256")
        self.update(data)

    def update(self, data: bytes) -> None:
        CountingSha256.hashed += len(data)
        self.inner.update(data)

    def copy(self) -> CountingSha256:
        return CountingSha256(inner=self.inner.copy())

    def hexdigest(self) -> str:
        return str(self.inner.hexdigest())

    def digest(self) -> bytes:
        return bytes(self.inner.digest())


def test_statement_by_statement_progress_hashes_each_statement_once(
    tmp_path: Path, db_url: str, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    pad = "x" * 2000
    body = "CREATE TABLE seed (id int PRIMARY KEY, note text);\n" + "".join(
        f"INSERT INTO seed VALUES ({i}, '{pad}');\n" for i in range(600))
    (folder / "20240101000000_seed.sql").write_text(f"-- pgshift:no-transaction\n-- pgshift:up\n{body}")
    monkeypatch.setattr(hashlib, "sha256", CountingSha256)
    CountingSha256.hashed = 0
    report = api.migrate(Settings(database_url=db_url, base_dir=tmp_path, migrations_dir="migrations"))
    assert [(r.mode, r.statements) for r in report.applied] == [("statement-by-statement", 601)]
    assert conn.execute("SELECT count(*) FROM seed").fetchone() == (600,)
    # Progress after statement n records a checksum of statements 1..n: computed from scratch each
    # time, that hashes the file 300 times over.
    assert CountingSha256.hashed < 3 * len(body), CountingSha256.hashed


def _peak_mb(args: list[str]) -> float:
    """Peak RSS (the process's own VmHWM, see bench/large_files/run.py) of `pgshift ARGS`."""
    bench = load_bench("large_files/run.py", "pgshift_bench_large_files")
    run = bench.measure([*bench.pgshift_argv(), *args], env=bench.pgshift_env(None), limit=300)
    assert run.ok, args
    return float(run.peak_mb)


@pytest.mark.parametrize("command", ["lint", "migrate"])
def test_peak_memory_of_lint_and_migrate_does_not_grow_with_the_file(
    command: str, tmp_path: Path, pg_server: PgServer
) -> None:
    """The same command on a 4 MB and a 16 MB file of the same kind, each in its own process: a large
    part is read from its file a chunk at a time (splitter.StreamedStatements), so the peak grows by
    far less than the 12 MB between them. Holding the text and the statements (before) grew it by
    19 MB (lint) and 17 MB (migrate); now it grows by about 2."""
    peaks = []
    for size in (4 * MB, 16 * MB):
        folder = tmp_path / f"{size}" / "migrations"
        _gen().write(folder, "native", size)
        args = ["lint", "-o", "json", str(folder)]
        database = None
        if command == "migrate":
            database = pg_server.create_database()
            args = ["migrate", "--no-backup", "--database-url", pg_server.url_for(database), "--dir", str(folder)]
        try:
            peaks.append(_peak_mb(args))
        finally:
            if database is not None:
                pg_server.drop_database(database)
    assert peaks[1] - peaks[0] < 0.4 * 12 * MB / 2**20, peaks


def test_a_large_non_transactional_file_resumes_at_the_statement_that_failed(
    tmp_path: Path, db_url: str, conn: psycopg.Connection[Any]
) -> None:
    """A part over 1 MB run statement by statement makes its steps as it goes (steps.StatementSteps) and
    still stops at the failing statement's line, and a rerun resumes there."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    pad = "x" * 2000
    rows = [f"INSERT INTO seed VALUES ({i}, '{pad}');\n" for i in range(700)]
    rows[500] = "INSERT INTO seed VALUES (0, 'taken');\n"
    head = "-- pgshift:no-transaction\n-- pgshift:up\nCREATE TABLE seed (id int PRIMARY KEY, note text);\n"
    path = folder / "20240101000000_seed.sql"
    path.write_text(head + "".join(rows))
    assert path.stat().st_size > 1.3 * MB  # streamed: over STREAM_CHARS
    settings = Settings(database_url=db_url, base_dir=tmp_path, migrations_dir="migrations")
    with pytest.raises(MigrationFailed) as failed:
        api.migrate(settings, checks=MigrateChecks(backup=False))
    assert (failed.value.file, failed.value.line) == (str(path), 504)
    assert conn.execute("SELECT count(*) FROM seed").fetchone() == (500,)
    rows[500] = f"INSERT INTO seed VALUES (500, '{pad}');\n"
    path.write_text(head + "".join(rows))
    report = api.migrate(settings, checks=MigrateChecks(backup=False))
    assert [(r.mode, r.statements, r.resumed_at) for r in report.applied] == [("statement-by-statement", 701, 501)]
    assert conn.execute("SELECT count(*) FROM seed").fetchone() == (700,)


@pytest.mark.parametrize("ignored", [True, False])
def test_a_suppression_deep_in_a_large_file_applies(tmp_path: Path, ignored: bool) -> None:
    """Lint reads a large file's suppressions from the lines that can hold one, in pieces (it read
    the whole file again for them)."""
    body = _gen().body(int(1.5 * MB))
    comment = "-- pgshift:ignore all -- a seed table nobody reads yet\n" if ignored else ""
    index = "CREATE INDEX accounts_owner ON accounts (owner);\n"  # an existing table: PS001
    (tmp_path / "20240101000000_seed.sql").write_text(f"-- pgshift:up\n{body}{comment}{index}")
    line = 1 + body.count("\n") + 1 + (1 if ignored else 0)
    _, migrations = load_migrations(tmp_path)
    report = lint_migrations(migrations)
    at_index = [f for f in report.findings if f.line == line]
    assert at_index and all(f.suppressed == ignored for f in at_index), [(f.rule, f.line) for f in report.findings]
