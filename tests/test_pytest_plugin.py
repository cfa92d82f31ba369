"""pgshift's pytest plugin (pgshift.testing), run the way a user runs it: pytest in a subprocess, in a
project folder of its own, against the real server (PGSHIFT_TEST_DSN points it at this suite's)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from pgshift import api
from pgshift.config import Settings
from tests.conftest import PgServer

pytest_plugins = ("pytester",)


def _project(root: Path, files: dict[str, str], *, tests: str = "", conftest: str = "") -> Path:
    for name, text in files.items():
        path = root / "migrations" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    (root / "pgshift.toml").write_text('migrations_dir = "migrations"\n')
    if tests:
        (root / "test_app.py").write_text(textwrap.dedent(tests))
    if conftest:
        (root / "conftest.py").write_text(textwrap.dedent(conftest))
    return root


@pytest.fixture
def plugin_env(pytester: pytest.Pytester, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PGSHIFT_TEST_DSN", pg_server.admin_url)
    for name in ("DATABASE_URL", "PGSHIFT_MIGRATIONS_DIR", "PGSHIFT_TEST_LEDGER_DSN"):
        monkeypatch.delenv(name, raising=False)
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *args, timeout=300)


REVERSIBLE = {
    "001_trades.sql": """
        -- pgshift:up
        CREATE TABLE trades (id bigint PRIMARY KEY, user_id bigint);
        -- pgshift:down
        DROP TABLE trades;
        """,
    "002_status.sql": """
        -- pgshift:up
        ALTER TABLE trades ADD COLUMN status text;
        -- pgshift:down
        ALTER TABLE trades DROP COLUMN status;
        """,
}


def test_the_plugin_does_nothing_unless_switched_on(plugin_env: pytest.Pytester) -> None:
    _project(plugin_env.path, REVERSIBLE, tests="def test_app():\n    assert True\n")
    result = _run(plugin_env)
    result.assert_outcomes(passed=1)
    assert "pgshift::" not in result.stdout.str()


def test_a_reversible_history_passes_every_builtin_check(plugin_env: pytest.Pytester) -> None:
    _project(plugin_env.path, {**REVERSIBLE, "003_price.sql": "-- pgshift:up\nALTER TABLE trades ADD price numeric;\n"})
    result = _run(plugin_env, "--pgshift")
    result.assert_outcomes(passed=5, skipped=1)
    out = result.stdout.str()
    for item in ("unique-versions", "lint", "applies-from-empty", "reversible[001]", "reversible[002]"):
        assert f"PASSED pgshift::{item}" in out
    # A migration without a down part is not applicable, reported at its own file.
    assert "SKIPPED [1] migrations/003_price.sql:1: not applicable: 003 price has no down part" in out


def test_a_down_part_that_forgets_something_fails_with_the_catalog_diff(plugin_env: pytest.Pytester) -> None:
    files = {**REVERSIBLE, "002_status.sql": """
        -- pgshift:up
        ALTER TABLE trades ADD COLUMN status text;
        CREATE INDEX trades_status ON trades (status);
        CREATE TABLE audit (id int);
        -- pgshift:down
        ALTER TABLE trades DROP COLUMN status;
        """}
    _project(plugin_env.path, files)
    result = _run(plugin_env, "--pgshift")
    out = result.stdout.str()
    assert "FAILED pgshift::reversible[002]" in out and "PASSED pgshift::reversible[001]" in out
    assert "After its down part the catalog is not what it was before 002 status" in out
    assert "+ table public.audit" in out
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_switched_on_by_one_conftest_line_or_the_ini_setting(plugin_env: pytest.Pytester) -> None:
    _project(plugin_env.path, REVERSIBLE, conftest="pgshift_builtin_tests = True\n")
    by_conftest = _run(plugin_env)
    by_conftest.assert_outcomes(passed=5)
    (plugin_env.path / "conftest.py").unlink()
    (plugin_env.path / "pytest.ini").write_text("[pytest]\npgshift = true\n")
    by_ini = _run(plugin_env)
    by_ini.assert_outcomes(passed=5)


def test_lint_errors_fail_the_lint_check_with_file_and_line(plugin_env: pytest.Pytester) -> None:
    files = {**REVERSIBLE, "003_index.sql": """
        -- pgshift:up
        CREATE INDEX trades_user ON trades (user_id);
        -- pgshift:down
        DROP INDEX trades_user;
        """}
    _project(plugin_env.path, files)
    result = _run(plugin_env, "--pgshift")
    out = result.stdout.str()
    assert "FAILED pgshift::lint" in out
    assert "migrations/003_index.sql:2:1: error PS001 create-index-non-concurrently" in out
    # The project's lint settings apply: a disabled rule is no problem.
    (plugin_env.path / "pgshift.toml").write_text('migrations_dir = "migrations"\n[lint]\ndisable = ["PS001"]\n')
    _run(plugin_env, "--pgshift", "-k", "lint").assert_outcomes(passed=1, deselected=5)


def test_bad_settings_are_one_failure_with_pgshifts_message(plugin_env: pytest.Pytester) -> None:
    _project(plugin_env.path, REVERSIBLE)
    (plugin_env.path / "pgshift.toml").write_text('migrations_dir = "migrations"\n[lint]\nfail_level = "never"\n')
    result = _run(plugin_env, "--pgshift")
    result.assert_outcomes(failed=1)
    assert "lint.fail_level in " in result.stdout.str() and "must be one of" in result.stdout.str()


def test_a_history_that_does_not_load_is_one_failure_naming_the_file(plugin_env: pytest.Pytester) -> None:
    _project(plugin_env.path, {**REVERSIBLE, "002_status_again.sql": "-- pgshift:up\nSELECT 1;\n"})
    result = _run(plugin_env, "--pgshift")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "FAILED pgshift::loads" in out and "002" in out


def test_the_ledger_of_an_existing_database_must_match_the_files(plugin_env: pytest.Pytester, db_url: str) -> None:
    root = _project(plugin_env.path, REVERSIBLE)
    api.migrate(Settings(database_url=db_url, base_dir=root, migrations_dir="migrations"))
    _run(plugin_env, "--pgshift", "--pgshift-ledger-dsn", db_url, "-k", "ledger").assert_outcomes(
        passed=1, deselected=5)
    (root / "migrations" / "002_status.sql").write_text(
        "-- pgshift:up\nALTER TABLE trades ADD COLUMN status varchar(20);\n-- pgshift:down\n"
        "ALTER TABLE trades DROP COLUMN status;\n")
    edited = _run(plugin_env, "--pgshift", "--pgshift-ledger-dsn", db_url, "-k", "ledger")
    edited.assert_outcomes(failed=1, deselected=5)
    assert "002 status: edited" in edited.stdout.str()


def test_operations_migrations_are_expanded_aborted_expanded_and_contracted(plugin_env: pytest.Pytester) -> None:
    files = {
        "001_accounts.sql": """
            -- pgshift:up
            CREATE TABLE accounts (id int PRIMARY KEY, email text);
            -- pgshift:down
            DROP TABLE accounts;
            """,
        "002_rename.ops.yaml": """
            operations:
              - rename_column: {table: accounts, from: email, to: email_address}
            """,
    }
    _project(plugin_env.path, files)
    result = _run(plugin_env, "--pgshift")
    result.assert_outcomes(passed=5)
    assert "PASSED pgshift::reversible[002]" in result.stdout.str()


RESHAPE = {
    "001_accounts.sql": """
        -- pgshift:up
        CREATE TABLE accounts (id int PRIMARY KEY, email text, legacy text, plan text DEFAULT 'trial');
        -- pgshift:down
        DROP TABLE accounts;
        """,
    "002_reshape.ops.yaml": """
        operations:
          - add_column: {table: accounts, column: {name: status, type: text, nullable: false, default: "'new'"}}
          - set_default: {table: accounts, column: plan, default: "'free'"}
          - add_unique: {table: accounts, name: accounts_email_key, columns: [email]}
          - drop_column: {table: accounts, column: legacy}
        """,
}


def test_expand_then_contract_reaches_the_shape_the_operations_declare(plugin_env: pytest.Pytester) -> None:
    _project(plugin_env.path, RESHAPE)
    result = _run(plugin_env, "--pgshift")
    result.assert_outcomes(passed=5)
    assert "PASSED pgshift::reversible[002]" in result.stdout.str()


def test_a_contract_that_misses_the_declared_shape_fails_naming_the_migration_with_the_diff(
        plugin_env: pytest.Pytester) -> None:
    """drop_column's contract is broken in the test process: the column it declares dropped stays."""
    _project(plugin_env.path, RESHAPE, conftest="""
        from pgshift.ops.operations.drop_column import DropColumn

        DropColumn.contract = lambda self, plan, index: None  # forgets to drop the column
        """)
    result = _run(plugin_env, "--pgshift")
    result.assert_outcomes(passed=4, failed=1)
    out = result.stdout.str()
    assert "FAILED pgshift::reversible[002]" in out
    assert ("After expand and contract, 002 reshape does not reach the shape its operations declare (- declared but "
            "missing, + there but not declared); the catalog differs (3 change(s)):") in out
    assert "  + column public.accounts.legacy: text null position 3" in out  # and the columns after it moved
    assert "  ~ column public.accounts.plan: text null default 'free'::text position 3  ->  " in out


def test_formats_without_down_parts_and_with_down_files(plugin_env: pytest.Pytester) -> None:
    _project(plugin_env.path, {
        "000001_trades.up.sql": "CREATE TABLE trades (id bigint PRIMARY KEY);\n",
        "000001_trades.down.sql": "DROP TABLE trades;\n",
        "000002_note.up.sql": "ALTER TABLE trades ADD COLUMN note text;\n",
        "000002_note.down.sql": "SELECT 1;\n",  # forgets to drop the column
    })
    golang = _run(plugin_env, "--pgshift")
    out = golang.stdout.str()
    assert "PASSED pgshift::reversible[1]" in out and "FAILED pgshift::reversible[2]" in out
    assert "- column public.trades.note" not in out and "+ column public.trades.note" in out

    flyway = plugin_env.path / "flyway"
    _project(flyway, {"V1__trades.sql": "CREATE TABLE trades (id bigint PRIMARY KEY);\n",
                      "V2__note.sql": "ALTER TABLE trades ADD COLUMN note text;\n"})
    result = _run(plugin_env, "--pgshift", "--pgshift-config", str(flyway / "pgshift.toml"))
    result.assert_outcomes(passed=3, skipped=2)
    assert "not applicable: 2 note has no down part" in result.stdout.str()


def test_fixtures_give_each_test_a_migrated_database_and_a_step_by_step_migrator(
        plugin_env: pytest.Pytester) -> None:
    _project(plugin_env.path, REVERSIBLE, tests="""
        import psycopg

        def test_first(pgshift_db):
            with psycopg.connect(pgshift_db) as conn:
                conn.execute("INSERT INTO trades (id, status) VALUES (1, 'new')")

        def test_second_sees_a_fresh_copy(pgshift_db):
            with psycopg.connect(pgshift_db) as conn:
                assert conn.execute("SELECT count(*) FROM trades").fetchone() == (0,)

        def test_data_between_steps(pgshift_migrator):
            pgshift_migrator.migrate(to="001")
            pgshift_migrator.execute("INSERT INTO trades (id, user_id) VALUES (1, 7)")
            pgshift_migrator.migrate()
            assert pgshift_migrator.execute("SELECT user_id, status FROM trades") == [(7, None)]
            assert pgshift_migrator.applied() == ["001", "002"]
            pgshift_migrator.rollback()
            assert pgshift_migrator.applied() == ["001"]
        """)
    _run(plugin_env).assert_outcomes(passed=3)


def test_without_a_test_dsn_the_plugin_starts_its_own_server(pytester: pytest.Pytester,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGSHIFT_TEST_DSN", raising=False)
    _project(pytester.path, REVERSIBLE, tests="""
        import psycopg

        def test_server(pgshift_server):
            with psycopg.connect(pgshift_server.admin_url) as conn:
                assert conn.execute("SELECT current_setting('server_version_num')::int").fetchone()[0] >= 120000
        """)
    _run(pytester).assert_outcomes(passed=1)


def test_importing_the_plugin_is_cheap() -> None:
    # It loads in every pytest run where pgshift is installed, pgshift's own included.
    probe = subprocess.run([sys.executable, "-c", "import sys, pgshift.testing; print(sorted(sys.modules))"],
                           capture_output=True, text=True, check=True)
    loaded = set(probe.stdout.strip().strip("[]").replace("'", "").split(", "))
    heavy = {"psycopg", "pglast", "rich", "click", "yaml", "pgshift.api", "pgshift.config"}
    assert not heavy & loaded, heavy & loaded


def test_the_database_fixtures_leave_no_database_behind(plugin_env: pytest.Pytester, pg_server: PgServer) -> None:
    _project(plugin_env.path, REVERSIBLE, tests="def test_db(pgshift_db):\n    assert pgshift_db\n")
    _run(plugin_env, "--pgshift").assert_outcomes(passed=6)
    with psycopg.connect(pg_server.admin_url) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'pgshift_test_%'").fetchall()
    assert left == []


@pytest.mark.parametrize("files, reversible, not_applicable", [
    ({"20240101000000_trades.sql": "-- migrate:up\nCREATE TABLE trades (id bigint PRIMARY KEY);\n\n"
                                   "-- migrate:down\nDROP TABLE trades;\n"}, ["20240101000000"], []),
    ({"00001_trades.sql": "-- +goose Up\nCREATE TABLE trades (id bigint PRIMARY KEY);\n\n"
                          "-- +goose Down\nDROP TABLE trades;\n"}, ["1"], []),
    ({"20240101000000_trades/migration.sql": "CREATE TABLE trades (id bigint PRIMARY KEY);\n",
      "migration_lock.toml": 'provider = "postgresql"\n'}, [], ["20240101000000"]),
], ids=["dbmate", "goose", "prisma"])
def test_every_folder_format(plugin_env: pytest.Pytester, files: dict[str, str], reversible: list[str],
                             not_applicable: list[str]) -> None:
    _project(plugin_env.path, files)
    result = _run(plugin_env, "--pgshift")
    out = result.stdout.str()
    assert "PASSED pgshift::applies-from-empty" in out and "PASSED pgshift::lint" in out, out
    for version in reversible:
        assert f"PASSED pgshift::reversible[{version}]" in out
    for version in not_applicable:
        assert f"reversible[{version}]" not in out.split("PASSED")[-1] and "not applicable" in out
    assert result.ret == pytest.ExitCode.OK
