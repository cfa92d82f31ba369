"""Operations as declared in ``<version>_<name>.ops.yaml`` (or ``.ops.json``) files, and their validation.

The field table ``OPERATIONS`` is the single source of truth: the loader validates against it
(errors name the file, the operation's position and the key) and ``json_schema()`` renders the
JSON schema shipped as docs/ops.schema.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from psycopg import sql

from pgshift.errors import MigrationSourceError

# field name -> (type, required). Types: str, bool, strs (list of strings), column, columns.
Fields = dict[str, tuple[str, bool]]
_COLUMN: Fields = {"name": ("str", True), "type": ("str", True), "nullable": ("bool", False),
                   "default": ("str", False), "primary_key": ("bool", False), "check": ("str", False),
                   "references": ("str", False)}
OPERATIONS: dict[str, Fields] = {
    "create_table": {"table": ("str", True), "columns": ("columns", True), "primary_key": ("strs", False)},
    "drop_table": {"table": ("str", True)},
    "rename_table": {"from": ("str", True), "to": ("str", True)},
    "add_column": {"table": ("str", True), "column": ("column", True), "up": ("str", False)},
    "drop_column": {"table": ("str", True), "column": ("str", True), "down": ("str", False)},
    "rename_column": {"table": ("str", True), "from": ("str", True), "to": ("str", True)},
    "change_column_type": {"table": ("str", True), "column": ("str", True), "type": ("str", True),
                           "up": ("str", False), "down": ("str", False), "default": ("str", False)},
    "set_not_null": {"table": ("str", True), "column": ("str", True), "up": ("str", False)},
    "drop_not_null": {"table": ("str", True), "column": ("str", True)},
    "set_default": {"table": ("str", True), "column": ("str", True), "default": ("str", False)},
    "add_check": {"table": ("str", True), "name": ("str", True), "check": ("str", True)},
    "add_foreign_key": {"table": ("str", True), "name": ("str", True), "columns": ("strs", True),
                        "references_table": ("str", True), "references_columns": ("strs", True),
                        "on_delete": ("str", False)},
    "add_unique": {"table": ("str", True), "name": ("str", True), "columns": ("strs", True)},
    "create_index": {"table": ("str", True), "name": ("str", True), "columns": ("strs", True),
                     "unique": ("bool", False), "method": ("str", False), "where": ("str", False)},
    "drop_index": {"name": ("str", True)},
    "add_enum_value": {"type": ("str", True), "value": ("str", True), "before": ("str", False),
                       "after": ("str", False)},
    "sql": {"up": ("str", True), "down": ("str", False), "contract": ("str", False)},
}
TOP_LEVEL: Fields = {"schema": ("str", False), "version_schema": ("str", False), "lock_timeout": ("str", False),
                     "lock_retries": ("int", False), "backfill_target_ms": ("int", False),
                     "backfill_batch_size": ("int", False), "backfill_max_lock_ms": ("int", False),
                     "operations": ("ops", True)}
ON_DELETE = ("NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT")


@dataclass(frozen=True)
class Op:
    """One operation: ``kind`` names it, ``args`` holds its validated fields."""

    kind: str
    args: dict[str, Any]
    where: str = "<python>"

    def get(self, key: str, default: Any = None) -> Any:
        return self.args.get(key, default)

    @property
    def table(self) -> str | None:
        value = self.args.get("table")
        return str(value) if value is not None else None


@dataclass
class OpsFile:
    operations: list[Op]
    schema: str = "public"
    version_schema: str | None = None
    lock_timeout: str = "50ms"
    lock_retries: int = 30
    # The expand backfill runs under live traffic: an application write to a row of the running
    # batch waits for that batch, so batches stay short (pgshift backfill has the same defaults).
    backfill_target_ms: int = 75
    backfill_batch_size: int = 1_000
    backfill_max_lock_ms: int = 100  # 0: no limit
    extra: dict[str, Any] = field(default_factory=dict)


def op(kind: str, **args: Any) -> Op:
    """Build and validate an operation from Python: ``op("rename_column", table="u", **{"from": "a", "to": "b"})``."""
    return _parse_op({kind: args}, "<python>", 0)


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str) and value.strip() != ""
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if kind == "strs":
        return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)
    return True


def _check_fields(values: Any, fields: Fields, where: str) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise MigrationSourceError(f"{where}: expected a mapping of fields, got {type(values).__name__}.")
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise MigrationSourceError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(fields)}.")
    for key, (kind, required) in fields.items():
        if key not in values or values[key] is None:
            if required:
                raise MigrationSourceError(f"{where}: the key {key!r} is required.")
            continue
        if kind == "column":
            values[key] = _check_fields(values[key], _COLUMN, f"{where}.{key}")
        elif kind == "columns":
            if not isinstance(values[key], list) or not values[key]:
                raise MigrationSourceError(f"{where}: {key!r} must be a non-empty list of columns.")
            values[key] = [_check_fields(c, _COLUMN, f"{where}.{key}[{i}]") for i, c in enumerate(values[key])]
        elif not _type_ok(kind, values[key]):
            expected = {"str": "a non-empty string", "bool": "true or false", "int": "a whole number >= 0",
                        "strs": "a non-empty list of strings"}.get(kind, kind)
            raise MigrationSourceError(f"{where}: {key!r} must be {expected}, not {values[key]!r}.")
    return dict(values)


def _parse_op(item: Any, file: str, index: int) -> Op:
    where = f"{file}: operations[{index}]"
    if not isinstance(item, dict) or len(item) != 1:
        raise MigrationSourceError(f"{where}: each operation is a mapping with one key, the operation's name "
                                   "(for example `- rename_column: {table: users, from: a, to: b}`).")
    kind, values = next(iter(item.items()))
    if kind not in OPERATIONS:
        raise MigrationSourceError(f"{where}: unknown operation {kind!r}; known: {', '.join(OPERATIONS)}.")
    args = _check_fields(values, OPERATIONS[kind], f"{where}.{kind}")
    if kind == "add_foreign_key" and args.get("on_delete") and str(args["on_delete"]).upper() not in ON_DELETE:
        raise MigrationSourceError(f"{where}.{kind}: 'on_delete' must be one of {', '.join(ON_DELETE)}.")
    if kind == "add_enum_value" and args.get("before") and args.get("after"):
        raise MigrationSourceError(f"{where}.{kind}: give 'before' or 'after', not both.")
    if kind == "add_column":
        column = args["column"]
        if column.get("nullable") is False and column.get("default") is None and not args.get("up"):
            raise MigrationSourceError(f"{where}.{kind}: a NOT NULL column needs a 'default' or an 'up' "
                                       "expression to fill the existing rows.")
    return Op(kind, args, f"{where}.{kind}")


def parse_document(data: Any, file: str) -> OpsFile:
    if isinstance(data, list):
        data = {"operations": data}
    values = _check_fields(data, {k: v if v[0] != "ops" else ("any", True) for k, v in TOP_LEVEL.items()}, file)
    operations = values.pop("operations")
    if not isinstance(operations, list) or not operations:
        raise MigrationSourceError(f"{file}: 'operations' must be a non-empty list.")
    parsed = [_parse_op(item, file, i) for i, item in enumerate(operations)]
    return OpsFile(parsed, **values)


def load_file(path: Path) -> tuple[OpsFile, str]:
    """(the parsed file, its text for the checksum)."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise MigrationSourceError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") \
            from None
    if data is None:
        raise MigrationSourceError(f"The migration file {path} is empty.")
    return parse_document(data, str(path)), text


def _schema_of(kind: str) -> dict[str, Any]:
    schemas: dict[str, dict[str, Any]] = {
        "str": {"type": "string", "minLength": 1}, "bool": {"type": "boolean"},
        "int": {"type": "integer", "minimum": 0},
        "strs": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
        "column": {"$ref": "#/$defs/column"},
        "columns": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/column"}},
    }
    return schemas[kind]


def _object(fields: Fields) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False,
            "properties": {k: _schema_of(t) for k, (t, _r) in fields.items()},
            "required": [k for k, (_t, r) in fields.items() if r]}


def json_schema() -> dict[str, Any]:
    """The JSON schema of an ops file (docs/ops.schema.json is generated from this)."""
    top = {k: v for k, v in TOP_LEVEL.items() if k != "operations"}
    document = _object(top)
    document["properties"]["operations"] = {
        "type": "array", "minItems": 1,
        "items": {"oneOf": [{"type": "object", "additionalProperties": False, "required": [name],
                             "properties": {name: {"$ref": f"#/$defs/{name}"}}} for name in OPERATIONS]}}
    document["required"] = ["operations"]
    defs: dict[str, Any] = {"column": _object(_COLUMN)}
    defs.update({name: _object(fields) for name, fields in OPERATIONS.items()})
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://pgshift.dev/ops.schema.json",
            "title": "pgshift operations file (<version>_<name>.ops.yaml / .ops.json)", **document, "$defs": defs}


# SQL pieces of an operation, shared by the planner and the linter's schema model (which replays what
# an operations migration does without planning it).
def is_constant(expression: str) -> bool:
    """True when a default is a constant (metadata-only ADD COLUMN); anything else is filled in batches."""
    from pglast import parse_sql

    try:
        stmt: Any = parse_sql(f"SELECT {expression}")[0].stmt
    except Exception:
        return False
    node = stmt.targetList[0].val
    while type(node).__name__ == "TypeCast":
        node = node.arg
    return type(node).__name__ == "A_Const"


def column_definition(column: dict[str, Any]) -> sql.Composable:
    parts: list[sql.Composable] = [sql.Identifier(str(column["name"])), sql.SQL(str(column["type"]))]
    if column.get("primary_key"):
        parts.append(sql.SQL("PRIMARY KEY"))
    if column.get("nullable") is False:
        parts.append(sql.SQL("NOT NULL"))
    if column.get("default") is not None:
        parts.append(sql.SQL("DEFAULT {}").format(sql.SQL(str(column["default"]))))
    if column.get("check"):
        parts.append(sql.SQL("CHECK ({})").format(sql.SQL(str(column["check"]))))
    if column.get("references"):
        parts.append(sql.SQL("REFERENCES {}").format(sql.SQL(str(column["references"]))))
    return sql.SQL(" ").join(parts)
