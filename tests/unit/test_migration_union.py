"""Migrations as a typed union (#13): a SqlMigration or an OpsMigration, each saying its steps per phase,
whether a phase destroys data, and what undoes it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from pgshift.migrations.loader import load_migrations
from pgshift.migrations.model import Migration, OpsMigration, OpsPhase, SqlMigration, Statement
from pgshift.ops.operations import _base
from pgshift.runner import steps

OPS = """operations:
  - add_column:
      table: items
      column: {name: code, type: text}
"""


def _folder(tmp_path: Path) -> list[Migration]:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "1_items.sql").write_text("-- pgshift:up\nCREATE TABLE items (id int);\n"
                                        "-- pgshift:down\nDROP TABLE items;\n")
    (folder / "2_note.sql").write_text("-- pgshift:up\nALTER TABLE items ADD COLUMN note text;\n")
    (folder / "3_code.ops.yaml").write_text(OPS)
    return load_migrations(folder, "native")[1]


class _Planner:
    """Records what each kind asks of the layer above."""

    def sql_steps(self, migration: SqlMigration, statements: Sequence[Statement]) -> list[str]:
        return [f"sql {migration.version}: {s.sql}" for s in statements]

    def ops_steps(self, migration: OpsMigration, phase: OpsPhase) -> list[str]:
        return [f"ops {migration.version}: {phase}"]


class _Judge:
    def __init__(self, sql: bool, contract: list[str]) -> None:
        self.sql, self.contract = sql, contract

    def sql_drops(self, migration: SqlMigration) -> bool:
        return self.sql

    def contract_drops(self, migration: OpsMigration) -> list[str]:
        return self.contract


def test_readers_make_one_kind_or_the_other_and_the_base_is_never_made(tmp_path: Path) -> None:
    with_down, without_down, ops = _folder(tmp_path)
    assert isinstance(with_down, SqlMigration) and isinstance(without_down, SqlMigration)
    assert isinstance(ops, OpsMigration) and ops.ops.operations[0].kind == "add_column"
    assert (with_down.forward, ops.forward) == ("up", "expand")
    with pytest.raises(TypeError, match="make one of those"):
        Migration("1", "x", Path("x.sql"), [], None, "", "native")


def test_steps_per_phase(tmp_path: Path) -> None:
    with_down, without_down, ops = _folder(tmp_path)
    assert with_down.steps("up", _Planner()) == ["sql 1: CREATE TABLE items (id int)"]
    assert with_down.steps("down", _Planner()) == ["sql 1: DROP TABLE items"]
    assert [ops.steps(p, _Planner()) for p in ops.phases] == [["ops 3: expand"], ["ops 3: contract"],
                                                              ["ops 3: abort"]]
    with pytest.raises(ValueError, match="has no down part"):
        without_down.steps("down", _Planner())
    with pytest.raises(ValueError, match="operations migration: it has no up part"):
        ops.steps("up", _Planner())


def test_only_forward_phases_are_destructive_and_recovery_never_is(tmp_path: Path) -> None:
    with_down, _without_down, ops = _folder(tmp_path)
    drops = _Judge(sql=True, contract=["finish items: drop sync triggers and old columns"])
    assert with_down.is_destructive("up", drops) and not with_down.is_destructive("down", drops)
    assert ops.is_destructive("contract", drops)
    assert not ops.is_destructive("expand", drops) and not ops.is_destructive("abort", drops)
    assert not ops.is_destructive("contract", _Judge(sql=True, contract=[]))


def test_undo_hints(tmp_path: Path) -> None:
    with_down, without_down, ops = _folder(tmp_path)
    assert with_down.undo_hint() == "`pgshift rollback` runs its down part"
    assert without_down.undo_hint() == "restore from a backup with `pgshift restore`"
    assert ops.undo_hint() == "`pgshift abort --version 3`" and ops.undo_hint(contracted=True) is None


def test_step_kind_is_defined_once_in_the_lowest_layer_naming_it() -> None:
    assert vars(steps)["StepKind"] is _base.StepKind
    assert "StepKind =" not in Path(steps.__file__).read_text()
