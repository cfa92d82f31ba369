"""`pgshift.api.lint`: several paths linted as one run and one merged report, each folder read by its
own format's reader (its directives kept, a broken file reported beside the others), the CLI's flags
as LintOptions, --fix as lint_fix."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pgshift import api
from pgshift.config import Settings
from pgshift.errors import ConfigError, UsageError

GOOSE_INDEX = """-- +goose NO TRANSACTION
-- +goose Up
CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a_idx ON t (a);
-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS t_a_idx;
"""


def test_a_folder_keeps_its_directives_beside_a_broken_file_a_plain_file_and_stdin(tmp_path: Path) -> None:
    folder = tmp_path / "goose"
    folder.mkdir()
    (folder / "00001_t.sql").write_text("-- +goose Up\nCREATE TABLE t (a int);\n-- +goose Down\nDROP TABLE t;\n")
    (folder / "00002_idx.sql").write_text(GOOSE_INDEX)
    (folder / "00003_broken.sql").write_text("-- +goose Up\nCREATE TABLE u (a int;\n-- +goose Down\nSELECT 1;\n")
    plain = tmp_path / "plain.sql"
    plain.write_text(GOOSE_INDEX)  # the same text, as a plain file: its goose comments mean nothing here
    settings = Settings(base_dir=tmp_path, format="goose")
    stdin = io.StringIO("ALTER TABLE big ADD COLUMN c int NOT NULL DEFAULT 1;\nCREATE INDEX big_c ON big (c);\n")

    outcome = api.lint(settings, [str(folder), str(plain), "-"], api.LintOptions(assume_in_transaction=True),
                       stdin=stdin)

    report = outcome.report
    by_file = {(Path(f.file).name, f.rule) for f in report.findings}
    # In the folder the goose reader keeps NO TRANSACTION: the concurrent build is not in a transaction.
    assert ("00002_idx.sql", "PS004") not in by_file
    # The plain file runs in one transaction (--assume-in-transaction): there it is.
    assert ("plain.sql", "PS004") in by_file
    assert ("<stdin>", "PS001") in by_file
    [broken] = report.parse_errors
    assert Path(broken.file).name == "00003_broken.sql"
    assert report.files == 5 and outcome.fix is None
    assert outcome.failed and outcome.fail_level == settings.lint.fail_level
    assert settings.lint.assume_in_transaction is False  # the caller's settings are left alone


def test_the_flags_errors_name_the_flag_or_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--pg-version 9 is not a PostgreSQL major version"):
        api.lint(Settings(base_dir=tmp_path), [], api.LintOptions(pg_version=9))
    with pytest.raises(UsageError, match=r"nowhere\.sql is neither a file nor a folder") as caught:
        api.lint(Settings(base_dir=tmp_path), [str(tmp_path / "nowhere.sql")])
    assert caught.value.exit_code == 2  # as click's usage errors


def test_lint_fix_writes_the_safe_rewrite_and_drops_what_it_fixed(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_idx.sql").write_text("-- pgshift:up\nCREATE INDEX t_a_idx ON t (a);\n")
    settings = Settings(base_dir=tmp_path, migrations_dir="migrations")
    before = {f.rule for f in api.lint(settings).report.findings}
    assert "PS001" in before
    outcome = api.lint_fix(settings)
    assert outcome.fix is not None and outcome.fix.fixed
    assert "PS001" not in {f.rule for f in outcome.report.findings}
    assert "CONCURRENTLY" in "".join(p.read_text() for p in folder.iterdir())


EVENTS_OPS = """operations:
  - create_table:
      table: events
      columns:
        - {name: id, type: bigint, primary_key: true}
        - {name: kind, type: "varchar(20)"}
"""


def test_folder_lint_judges_sql_after_an_ops_migration_against_the_schema_it_leaves(tmp_path: Path) -> None:
    """Without --database, as with it (and as migrate's gate): the table an .ops migration creates is in the
    schema model, so widening its varchar is safe and shrinking it is the rewrite it is."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "1_events.ops.yaml").write_text(EVENTS_OPS)
    (folder / "2_widen.sql").write_text("-- pgshift:up\nALTER TABLE events ALTER COLUMN kind TYPE varchar(40);\n")
    (folder / "3_shrink.sql").write_text("-- pgshift:up\nALTER TABLE events ALTER COLUMN kind TYPE varchar(5);\n")

    report = api.lint(Settings(base_dir=tmp_path, migrations_dir="migrations")).report

    ps010 = {Path(f.file).name: f for f in report.findings if f.rule == "PS010"}
    assert "2_widen.sql" not in ps010, ps010["2_widen.sql"].message  # not "the old type ... is unknown"
    assert ps010["3_shrink.sql"].severity == "error" and "the length limit shrinks" in ps010["3_shrink.sql"].message
    assert report.files == 2 and not report.parse_errors


def test_a_loose_file_is_linted_without_reading_the_tree_around_it(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`pgshift lint notes.sql` in a repository root (or /tmp) used to let Flyway's detection walk the
    whole tree beside the file (seconds in a big one): no format names a file like this, so no folder
    is read. A file a format does name is still read with its folder's format."""
    from pgshift.migrations.loader import available_readers

    def no_scan(path: Path) -> bool:
        raise AssertionError(f"scanned {path} for a file no format names")

    for module in available_readers().values():
        monkeypatch.setattr(module, "detect", no_scan)
    loose = tmp_path / "notes.sql"
    loose.write_text("CREATE INDEX big_c ON big (c);\n")
    report = api.lint(Settings(base_dir=tmp_path), [str(loose)], api.LintOptions()).report
    assert {f.rule for f in report.findings} >= {"PS001"}  # linted as plain SQL
    monkeypatch.undo()

    folder = tmp_path / "goose"
    folder.mkdir()
    (folder / "00002_idx.sql").write_text(GOOSE_INDEX)
    (tmp_path / "00002_idx.sql").write_text(GOOSE_INDEX)  # the same text, loose: plain SQL in one transaction
    in_tx = api.LintOptions(assume_in_transaction=True)
    named = api.lint(Settings(base_dir=tmp_path), [str(folder / "00002_idx.sql"), str(tmp_path / "00002_idx.sql")],
                     in_tx).report
    # Read as goose, NO TRANSACTION is kept (no PS004); the loose copy has no goose folder around it.
    assert {(Path(f.file).parent.name, f.rule) for f in named.findings if f.rule == "PS004"} == {
        (tmp_path.name, "PS004")}
