"""Every registered operation (one module each in pgshift.ops.operations), as the lint rules' meta-test
checks every rule: it is documented, its example loads, the schema and the docs name it, and on a real
server its example expands, aborts back to exactly the catalog it started from, and expands and
contracts again into exactly the shape its ``schema_sql`` declares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from pglast import parse_sql

from pgshift import api
from pgshift.errors import MigrationSourceError
from pgshift.ops import service
from pgshift.ops.model import json_schema, op, parse_document
from pgshift.ops.operations import registry
from pgshift.ops.operations._base import Column, Operation, fields_of, is_constant
from pgshift.rehearsal import catalog
from pgshift.rehearsal.shape import declared_shape
from tests.ops.helpers import make_project, snapshot

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = sorted(registry().items())


def _example(cls: type[Operation]) -> Operation:
    return parse_document({"operations": [yaml.safe_load(cls.example)]}, f"{cls.kind}.example").operations[0]


def test_every_column_key_is_described() -> None:
    assert [s.key for s in fields_of(Column) if not s.doc] == []


def test_the_registry_finds_one_operation_per_module() -> None:
    modules = sorted(p.stem for p in (ROOT / "src" / "pgshift" / "ops" / "operations").glob("[!_]*.py"))
    assert list(registry()) == modules
    assert len(modules) >= 17


@pytest.mark.parametrize("kind,cls", OPERATIONS, ids=[k for k, _ in OPERATIONS])
def test_each_operation_is_documented_and_its_example_loads(kind: str, cls: type[Operation]) -> None:
    import sys

    assert (sys.modules[cls.__module__].__doc__ or "").startswith(f"{kind}: "), "module docstring: '<kind>: why'"
    assert cls.summary.endswith(".") and len(cls.summary) > 20
    loaded = _example(cls)
    assert type(loaded) is cls and loaded.origin == f"{kind}.example: operations[0].{kind}"
    # Written back out, it reads as the same operation: the dataclass keeps every key of the example.
    assert parse_document({"operations": [loaded.to_dict()]}, f"{kind}.example").operations[0] == loaded
    assert loaded.to_dict()[kind].keys() >= yaml.safe_load(cls.example)[kind].keys()
    assert op(kind, **yaml.safe_load(cls.example)[kind]) == loaded  # the Python API builds the same
    schema = json_schema()["$defs"][kind]
    assert schema["description"] == cls.summary
    assert list(schema["properties"]) == [s.key for s in fields_of(cls)]
    undescribed = [s.key for s in fields_of(cls) if not s.doc]
    assert undescribed == [], "describe every key: Annotated[type, 'text']"
    assert f"## `{kind}`" in (ROOT / "docs" / "operations.md").read_text()
    # What it leaves in the schema, for the linter's model, is SQL the model can read.
    for contracted in (False, True):
        for statement in loaded.schema_sql("public", contracted):
            parse_sql(statement if isinstance(statement, str) else statement.as_string())
    assert f"| `{kind}` |" in (ROOT / "docs" / "ops.md").read_text(), "add it to the table in docs/ops.md"


@pytest.mark.parametrize("kind,cls", OPERATIONS, ids=[k for k, _ in OPERATIONS])
def test_each_operation_refuses_an_unknown_key_and_a_missing_one(kind: str, cls: type[Operation]) -> None:
    values = dict(yaml.safe_load(cls.example)[kind])
    with pytest.raises(MigrationSourceError, match=rf"f\.ops\.yaml: operations\[0\]\.{kind}: unknown key 'bogus'"):
        parse_document({"operations": [{kind: {**values, "bogus": 1}}]}, "f.ops.yaml")
    required = [s.key for s in fields_of(cls) if s.required]
    assert required, "every operation needs something to act on"
    del values[required[0]]
    with pytest.raises(MigrationSourceError, match=rf"operations\[0\]\.{kind}: the key '{required[0]}' is required"):
        parse_document({"operations": [{kind: values}]}, "f.ops.yaml")


@pytest.mark.parametrize("kind,cls", OPERATIONS, ids=[k for k, _ in OPERATIONS])
def test_each_operation_expands_aborts_to_the_same_catalog_and_contracts(
        tmp_path: Path, db_url: str, conn: psycopg.Connection[Any], kind: str, cls: type[Operation]) -> None:
    settings = make_project(tmp_path, db_url, {"001_setup.sql": cls.setup or "SELECT 1;"})
    api.migrate(settings)
    before = snapshot(conn)
    unchanged = catalog.snapshot(conn)
    declared = declared_shape(conn, parse_document({"operations": [yaml.safe_load(cls.example)]}, "example"))
    assert declared.snapshot is not None and declared.snapshot != unchanged, "schema_sql must declare its shape"
    (tmp_path / "migrations" / "002_example.ops.yaml").write_text(
        json.dumps({"operations": [yaml.safe_load(cls.example)]}))
    expanded = api.migrate(settings)
    assert [m.version for m in expanded.applied] == ["002"]
    result = service.abort(settings)
    after = snapshot(conn)
    if kind == "add_enum_value":  # PostgreSQL cannot drop an enum value; abort says so
        assert any("cannot remove an enum value" in w for w in result.warnings)
        assert conn.execute("SELECT enum_range(NULL::order_status)::text").fetchone() == ("{new,paid,refunded}",)
    else:
        assert after == before
    api.migrate(settings)
    service.contract(settings)
    assert api.status(settings).expanded == {}
    # Contracted, it is exactly the shape its schema_sql declares (what the pytest plugin's round trip checks).
    assert [c.line() for c in catalog.diff(declared.snapshot, catalog.snapshot(conn))] == []


# The loader's messages, word for word as the hand-written type table gave them before the operations were
# typed (each names the file, the operation's position and the key), with their exit code.
MESSAGES = [
    ([{"rename_column": {"table": "t"}}], "operations[0].rename_column: the key 'from' is required."),
    ([{"rename_column": {"table": "t", "from": "a", "to": "b", "x": 1}}],
     "operations[0].rename_column: unknown key 'x'; known keys: table, from, to."),
    ([{"add_column": {"table": "t", "column": {"name": "a"}}}],
     "operations[0].add_column.column: the key 'type' is required."),
    ([{"add_column": {"table": "t", "column": {"name": "a", "type": "int", "nullable": "no"}}}],
     "operations[0].add_column.column: 'nullable' must be true or false, not 'no'."),
    ([{"add_column": {"table": "t", "column": {"name": "a", "type": "int", "nullable": False}}}],
     "operations[0].add_column: a NOT NULL column needs a 'default' or an 'up' expression to fill the existing rows."),
    ([{"add_column": {"table": "t", "column": ["x"]}}],
     "operations[0].add_column.column: expected a mapping of fields, got list."),
    ([{"create_table": {"table": "t", "columns": []}}],
     "operations[0].create_table: 'columns' must be a non-empty list of columns."),
    ([{"create_table": {"table": "t", "columns": [{"name": "a", "type": "int", "zz": 1}]}}],
     "operations[0].create_table.columns[0]: unknown key 'zz'; known keys: name, type, nullable, default, "
     "primary_key, check, references."),
    ([{"add_foreign_key": {"table": "t", "name": "f", "columns": ["a"], "references_table": "p",
                           "references_columns": ["id"], "on_delete": "explode"}}],
     "operations[0].add_foreign_key: 'on_delete' must be one of NO ACTION, RESTRICT, CASCADE, SET NULL, SET DEFAULT."),
    ([{"add_foreign_key": {"table": "t", "name": "f", "columns": [], "references_table": "p",
                           "references_columns": ["id"]}}],
     "operations[0].add_foreign_key: 'columns' must be a non-empty list of strings, not []."),
    ([{"add_enum_value": {"type": "t", "value": "v", "before": "a", "after": "b"}}],
     "operations[0].add_enum_value: give 'before' or 'after', not both."),
    ([{"create_index": {"table": "t", "name": "i", "columns": ["a"], "unique": "yes"}}],
     "operations[0].create_index: 'unique' must be true or false, not 'yes'."),
    ([{"drop_index": {"name": "  "}}], "operations[0].drop_index: 'name' must be a non-empty string, not '  '."),
    ([{"sql": {"down": "x"}}], "operations[0].sql: the key 'up' is required."),
    ([{"sql": "x"}], "operations[0].sql: expected a mapping of fields, got str."),
    (["x"], "operations[0]: each operation is a mapping with one key, the operation's name (for example "
            "`- rename_column: {table: users, from: a, to: b}`)."),
    ({"operations": []}, "'operations' must be a non-empty list."),
    ({"operations": [{"drop_index": {"name": "i"}}], "lock_retries": -1},
     "'lock_retries' must be a whole number >= 0, not -1."),
    ({"operations": [{"drop_index": {"name": "i"}}], "bogus": 1},
     "unknown key 'bogus'; known keys: schema, version_schema, lock_timeout, lock_retries, backfill_target_ms, "
     "backfill_batch_size, backfill_max_lock_ms, settings, operations."),
    ({"operations": [{"drop_index": {"name": "i"}}], "lock_timeout": "soon"},
     "'lock_timeout' must be a duration such as '2s', '500ms', '10min' or '7d', not 'soon'."),
    ({"operations": [{"drop_index": {"name": "i"}}], "settings": {"work_mem": True}},
     "'settings' must be a mapping of setting names to values (for example `settings: {maintenance_work_mem: "
     "1GB}`), not {'work_mem': True}."),
]


@pytest.mark.parametrize("document,message", MESSAGES, ids=[m[1][:40] for m in MESSAGES])
def test_the_loader_says_what_is_wrong_where_as_before(document: Any, message: str) -> None:
    with pytest.raises(MigrationSourceError) as caught:
        parse_document(document, "f.ops.yaml")
    assert str(caught.value) == f"f.ops.yaml: {message}"
    assert caught.value.exit_code == 6


def test_an_unknown_operation_names_every_known_one() -> None:
    with pytest.raises(MigrationSourceError) as caught:
        parse_document([{"frobnicate": {}}], "f.ops.yaml")
    assert str(caught.value) == ("f.ops.yaml: operations[0]: unknown operation 'frobnicate'; known: "
                                 f"{', '.join(registry())}.")


def test_a_choice_is_read_in_any_case_and_planned_as_written_in_sql(conn: psycopg.Connection[Any]) -> None:
    from pgshift.ops.plan import capture, plan_phases

    conn.execute("CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (id int, p int)")
    ops = parse_document([{"add_foreign_key": {"table": "c", "name": "c_p", "columns": ["p"], "references_table": "p",
                                               "references_columns": ["id"], "on_delete": "Set Null"}}], "f.ops.yaml")
    assert ops.operations[0].get("on_delete") == "SET NULL"
    step = plan_phases(ops, "002", capture(conn, ops)).expand[0]
    assert step.statements[0].as_string(conn).endswith("ON DELETE SET NULL NOT VALID")


@pytest.mark.parametrize(("default", "constant"), [
    ("0", True), ("-1", True), ("'pending'", True), ("'{}'::jsonb", True), ("CAST(1 AS bigint)", True),
    ("NULL", True), ("true", True),
    ("now()", False), ("gen_random_uuid()", False), ("1 + 1", False), ("(SELECT 1)", False),
    ("1, 2", False), ("1; DROP TABLE users", False), ("not valid sql (", False),
])
def test_only_a_constant_default_is_added_without_a_backfill(default: str, constant: bool) -> None:
    assert is_constant(default) is constant


def test_the_files_lock_timeout_is_kept_as_the_server_takes_it() -> None:
    """Written like a setting ("10m"), it reaches SET lock_timeout, which knows only "min"."""
    document = {"operations": [{"drop_index": {"name": "i"}}], "lock_timeout": "10m"}
    assert parse_document(document, "f.ops.yaml").lock_timeout.postgres == "10min"
    assert parse_document({**document, "lock_timeout": "50ms"}, "f.ops.yaml").lock_timeout.postgres == "50ms"
