"""Password masking, retry delays, version ordering, statement classification."""

from __future__ import annotations

import random

import pytest

from pgshift.db.connect import mask_password
from pgshift.migrations.classify import autocommit_reason, concurrent_index
from pgshift.migrations.model import version_sort_key
from pgshift.runner.retry import RetryPolicy


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://app:s3cr%40t@db:5432/app",
        "host=db password=s3cr@t dbname=app",
        "host=db password='s3 cr@t' dbname=app",
        "postgresql://app@db/app?password=s3cr@t&sslmode=require",
    ],
)
def test_passwords_are_masked(text: str) -> None:
    masked = mask_password(text)
    assert "s3" in text and "s3" not in masked and "***" in masked  # every password above contains "s3"


def test_retry_delays_grow_within_bounds_with_jitter() -> None:
    policy = RetryPolicy(attempts=6, initial_ms=100, max_ms=1000)
    rng = random.Random(7)
    delays = [policy.delay_seconds(n, rng) for n in range(1, 7)]
    for n, delay in enumerate(delays, start=1):
        cap = min(1000, 100 * 2 ** (n - 1)) / 1000
        assert cap / 2 <= delay <= cap
    assert len({round(d, 6) for d in delays}) == len(delays)


def test_versions_sort_numerically() -> None:
    versions = ["10", "9", "1.10", "1.2", "20240101000000"]
    assert sorted(versions, key=version_sort_key) == ["1.2", "1.10", "9", "10", "20240101000000"]
    assert version_sort_key("1") == version_sort_key("01")


@pytest.mark.parametrize(
    ("sql", "major", "expected"),
    [
        ("CREATE INDEX CONCURRENTLY i ON t (a)", 15, "CREATE INDEX CONCURRENTLY"),
        ("CREATE INDEX i ON t (a)", 15, None),
        ("ALTER TYPE mood ADD VALUE 'meh'", 11, "ALTER TYPE ... ADD VALUE before PostgreSQL 12"),
        ("ALTER TYPE mood ADD VALUE 'meh'", 12, None),
        ("VACUUM (ANALYZE) t", 15, "VACUUM"),
        ("ANALYZE t", 15, None),
        ("ALTER TABLE p DETACH PARTITION c CONCURRENTLY", 14, "ALTER TABLE ... DETACH PARTITION CONCURRENTLY"),
        ("REINDEX INDEX CONCURRENTLY i", 15, "REINDEX CONCURRENTLY"),
    ],
)
def test_autocommit_detection(sql: str, major: int, expected: str | None) -> None:
    assert autocommit_reason(sql, major) == expected


def test_concurrent_index_target() -> None:
    target = concurrent_index("CREATE INDEX CONCURRENTLY idx ON app.trades (user_id)")
    assert target is not None and (target.name, target.table_schema, target.table) == ("idx", "app", "trades")


def test_exit_code_docs_are_current() -> None:
    from pathlib import Path

    from pgshift.exit_codes import render

    doc = Path(__file__).parents[2] / "docs" / "exit-codes.md"
    assert doc.read_text() == render(), "run: python -m pgshift.exit_codes"


def test_every_error_class_has_its_own_exit_code() -> None:
    from pgshift import errors

    classes = errors.registered()  # also those defined outside errors.py (ops, ...)
    assert {"BackfillError", "OpsStateError"} <= {c.__name__ for c in classes}
    assert len({c.exit_code for c in classes}) == len(classes)
    assert len({c.code for c in classes}) == len(classes)
    from pgshift.exit_codes import render

    doc = render()
    assert all(f"| {c.exit_code} | `{c.code}` | `{c.__name__}` |" in doc for c in classes)


def test_nothing_raises_the_bare_base_class() -> None:
    # PgshiftError itself exits 1, which means "found something", with the code "error".
    import re
    from pathlib import Path

    src = Path(__file__).parents[2] / "src" / "pgshift"
    bare = [f"{path}:{n}" for path in src.rglob("*.py")
            for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"raise PgshiftError\(", line)]
    assert bare == []


def test_every_cli_command_is_mapped_to_the_module_that_defines_it() -> None:
    import importlib

    from pgshift.cli.main import COMMAND_MODULES, cli

    defined = {}
    for module_name in set(COMMAND_MODULES.values()):
        module = importlib.import_module(f"pgshift.cli.{module_name}")
        defined.update({c.name: module_name for c in module.COMMANDS})
    assert defined == COMMAND_MODULES
    ctx = cli.make_context("pgshift", ["--help"], resilient_parsing=True)
    assert all(cli.get_command(ctx, name) is not None for name in COMMAND_MODULES)


class _EdgeRandom(random.Random):
    """uniform() at one end of its range: the delay formula can be checked exactly."""

    def __init__(self, top: bool) -> None:
        super().__init__(0)
        self.top = top

    def uniform(self, a: float, b: float) -> float:
        return b if self.top else a


def test_retry_delay_is_half_fixed_and_half_jitter() -> None:
    policy = RetryPolicy(attempts=6, initial_ms=100, max_ms=1000)
    assert [policy.delay_seconds(n, _EdgeRandom(top=False)) for n in (1, 2, 5)] == pytest.approx([0.05, 0.1, 0.5])
    assert [policy.delay_seconds(n, _EdgeRandom(top=True)) for n in (1, 2, 5)] == pytest.approx([0.1, 0.2, 1.0])
