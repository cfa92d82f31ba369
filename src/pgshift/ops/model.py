"""An ops file (``<version>_<name>.ops.yaml`` or ``.ops.json``): its settings and its operations, and the
loader that reads and checks it.

Each operation is a typed dataclass in :mod:`pgshift.ops.operations` (one module per kind); its fields
are the single source of truth: the loader checks against them (errors name the file, the
operation's position and the key) and ``json_schema()`` renders the JSON schema shipped as
docs/ops.schema.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pgshift.errors import ConfigError, MigrationSourceError
from pgshift.ops.operations import registry
from pgshift.ops.operations._base import (
    Column,
    FieldSpec,
    Operation,
    column_definition,
    fields_of,
    is_constant,
    read_fields,
)
from pgshift.units import Duration

__all__ = ["Column", "Op", "Operation", "OpsFile", "column_definition", "is_constant", "json_schema", "load_file",
           "op", "parse_document"]

Op = Operation  # the name callers have used

# The file's own settings: key -> (type, required); the operations' fields come from their dataclasses.
TOP_LEVEL: dict[str, tuple[str, bool]] = {
    "schema": ("str", False), "version_schema": ("str", False), "lock_timeout": ("str", False),
    "lock_retries": ("int", False), "backfill_target_ms": ("int", False), "backfill_batch_size": ("int", False),
    "backfill_max_lock_ms": ("int", False), "settings": ("settings", False), "operations": ("ops", True)}


@dataclass
class OpsFile:
    operations: list[Op]
    schema: str = "public"
    version_schema: str | None = None
    lock_timeout: Duration = Duration.parse("50ms")
    lock_retries: int = 30
    # The expand backfill runs under live traffic: an application write to a row of the running
    # batch waits for that batch, so batches stay short (pgshift backfill has the same defaults).
    backfill_target_ms: int = 75
    backfill_batch_size: int = 1_000
    backfill_max_lock_ms: int = 100  # 0: no limit
    # Server settings the migration's steps run under ({"maintenance_work_mem": "1GB"}): SET LOCAL in a
    # transaction step, SET + RESET around an autocommit one (pgshift.runner.engine).
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def op(kind: str, **args: Any) -> Op:
    """Build and validate an operation from Python: ``op("rename_column", table="u", **{"from": "a", "to": "b"})``."""
    return _parse_op({kind: args}, "<python>", 0)


def _top_level(values: Any, file: str) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise MigrationSourceError(f"{file}: expected a mapping of fields, got {type(values).__name__}.")
    unknown = sorted(set(values) - set(TOP_LEVEL))
    if unknown:
        raise MigrationSourceError(f"{file}: unknown key {unknown[0]!r}; known keys: {', '.join(TOP_LEVEL)}.")
    for name, (kind, required) in TOP_LEVEL.items():
        value = values.get(name)
        if value is None:
            if required:
                raise MigrationSourceError(f"{file}: the key {name!r} is required.")
        elif kind == "str" and not (isinstance(value, str) and value.strip()):
            raise MigrationSourceError(f"{file}: {name!r} must be a non-empty string, not {value!r}.")
        elif kind == "int" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise MigrationSourceError(f"{file}: {name!r} must be a whole number >= 0, not {value!r}.")
        elif kind == "settings" and not (isinstance(value, dict) and all(
                isinstance(k, str) and isinstance(v, (str, int, float)) and not isinstance(v, bool)
                for k, v in value.items())):
            raise MigrationSourceError(f"{file}: {name!r} must be a mapping of setting names to values "
                                       f"(for example `settings: {{maintenance_work_mem: 1GB}}`), not {value!r}.")
    checked = {k: v for k, v in values.items() if v is not None}
    if "lock_timeout" in checked:
        # Checked here, not by SET lock_timeout mid-run.
        try:
            checked["lock_timeout"] = Duration.parse(checked["lock_timeout"], key=f"{file}: 'lock_timeout'")
        except ConfigError as exc:
            raise MigrationSourceError(exc.message) from exc
    return checked


def _parse_op(item: Any, file: str, index: int) -> Operation:
    where = f"{file}: operations[{index}]"
    if not isinstance(item, dict) or len(item) != 1:
        raise MigrationSourceError(f"{where}: each operation is a mapping with one key, the operation's name "
                                   "(for example `- rename_column: {table: users, from: a, to: b}`).")
    kind, values = next(iter(item.items()))
    operations = registry()
    if kind not in operations:
        raise MigrationSourceError(f"{where}: unknown operation {kind!r}; known: {', '.join(operations)}.")
    cls = operations[kind]
    parsed = cls(**read_fields(cls, values, f"{where}.{kind}"), origin=f"{where}.{kind}")
    parsed.validate()
    return parsed


def parse_document(data: Any, file: str) -> OpsFile:
    if isinstance(data, list):
        data = {"operations": data}
    values = _top_level(data, file)
    operations = values.pop("operations")
    if not isinstance(operations, list) or not operations:
        raise MigrationSourceError(f"{file}: 'operations' must be a non-empty list.")
    parsed = [_parse_op(item, file, i) for i, item in enumerate(operations)]
    return OpsFile(parsed, **values)


def _yaml_error(path: Path, exc: yaml.YAMLError) -> str:
    """One paragraph naming the file, line and column (PyYAML's own text spans several lines, each
    naming "<unicode string>" and quoting the line)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "") + "."


def load_file(path: Path) -> tuple[OpsFile, str]:
    """(the parsed file, its text for the checksum)."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise MigrationSourceError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}.") from exc
    except yaml.YAMLError as exc:
        raise MigrationSourceError(_yaml_error(path, exc)) from exc
    if data is None:
        raise MigrationSourceError(f"The migration file {path} is empty.")
    return parse_document(data, str(path)), text


_SCHEMAS: dict[str, dict[str, Any]] = {
    "str": {"type": "string", "minLength": 1}, "bool": {"type": "boolean"}, "int": {"type": "integer", "minimum": 0},
    "settings": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
    "strs": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
    "column": {"$ref": "#/$defs/column"},
    "columns": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/column"}},
}


def _property(spec: FieldSpec) -> dict[str, Any]:
    if spec.kind == "choice":  # any case is accepted
        schema: dict[str, Any] = {"type": "string", "enum": [*spec.choices, *(c.lower() for c in spec.choices)]}
    else:
        schema = dict(_SCHEMAS[spec.kind])
    return {**schema, "description": spec.doc} if spec.doc else schema


def _object(specs: tuple[FieldSpec, ...], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"description": description} if description else {}
    return {**out, "type": "object", "additionalProperties": False,
            "properties": {s.key: _property(s) for s in specs}, "required": [s.key for s in specs if s.required]}


def json_schema() -> dict[str, Any]:
    """The JSON schema of an ops file (docs/ops.schema.json is generated from this)."""
    top = tuple(FieldSpec(k, k, t, r) for k, (t, r) in TOP_LEVEL.items() if k != "operations")
    document = _object(top)
    operations = registry()
    document["properties"]["operations"] = {
        "type": "array", "minItems": 1,
        "items": {"oneOf": [{"type": "object", "additionalProperties": False, "required": [name],
                             "properties": {name: {"$ref": f"#/$defs/{name}"}}} for name in operations]}}
    document["required"] = ["operations"]
    defs: dict[str, Any] = {"column": _object(fields_of(Column), "A column as create_table and add_column declare it.")}
    defs.update({name: _object(fields_of(cls), cls.summary) for name, cls in operations.items()})
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://pgshift.dev/ops.schema.json",
            "title": "pgshift operations file (<version>_<name>.ops.yaml / .ops.json)", **document, "$defs": defs}
