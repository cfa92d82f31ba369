"""`pgshift backfill`'s flags parsed by the library (pgshift.api.backfill_options / backfill_spec), so a
library caller gets the CLI's defaults and checks, and every error names the flag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgshift import api
from pgshift.errors import ConfigError
from tests.helpers import run_pgshift


def test_the_defaults_are_the_cli_defaults_and_off_disables_a_limit() -> None:
    assert api.backfill_options() == api.BackfillOptions(
        target_ms=75, min_batch=100, max_batch=50_000, initial_batch=1_000, pause_ms=0, statement_timeout_ms=5_000,
        lock_timeout_ms=1_000, max_lock_ms=100, max_lag_s=10.0)
    options = api.backfill_options(max_lock="off", max_lag="OFF", pause="20ms", statement_timeout="1min")
    assert (options.max_lock_ms, options.max_lag_s, options.pause_ms, options.statement_timeout_ms) == (
        None, None, 20, 60_000)
    # A --max-batch under --min-batch is raised to it; the first batch stays between the two.
    clamped = api.backfill_options(min_batch=500, max_batch=10, batch_size=20)
    assert (clamped.min_batch, clamped.max_batch, clamped.initial_batch) == (500, 500, 500)


@pytest.mark.parametrize(("raw", "flag"), [
    ({"pause": "soon"}, "--pause"), ({"max_lock": "-"}, "--max-lock"), ({"max_lag": "10 parsecs"}, "--max-lag"),
    ({"lock_timeout": "1y"}, "--lock-timeout"), ({"statement_timeout": ""}, "--statement-timeout"),
    ({"min_batch": 0}, "--min-batch"), ({"max_batch": -5}, "--max-batch"), ({"batch_size": 0}, "--batch-size"),
    ({"target_ms": 0}, "--target-ms"),
])
def test_each_bad_value_names_its_flag(raw: dict[str, Any], flag: str) -> None:
    with pytest.raises(ConfigError, match=f"^{flag} "):
        api.backfill_options(**raw)


def test_the_job_spec_splits_the_key_and_refuses_an_empty_column() -> None:
    spec = api.backfill_spec("trades", "status = 'NEW'", "status IS NULL", " tenant , id ", "fill")
    assert (spec.table, spec.set_clause, spec.where, spec.key, spec.job) == (
        "trades", "status = 'NEW'", "status IS NULL", ("tenant", "id"), "fill")
    with pytest.raises(ConfigError, match=r"^--key 'id,,x' has an empty column name"):
        api.backfill_spec("trades", "x = 1", key="id,,x")


def test_the_cli_reports_an_empty_key_column_as_a_flag_error(
        tmp_path: Path, db_url: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE TABLE trades (id int PRIMARY KEY, x int)")
    result = run_pgshift(["backfill", "--table", "trades", "--set", "x = 1", "--key", "id,,x", "--json"],
                         cwd=tmp_path, url=db_url)
    assert result.returncode == ConfigError.exit_code, result.stderr
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "config" and error["message"].startswith("--key 'id,,x' has an empty column name")
