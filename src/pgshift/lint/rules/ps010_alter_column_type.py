"""PS010 alter-column-type."""

from __future__ import annotations

from collections.abc import Iterator

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import type_of
from pgshift.lint.rules._helpers import alter_cmds
from pgshift.lint.schema import Column

ALIASES = {
    "int": "int4", "integer": "int4", "int4": "int4", "bigint": "int8", "int8": "int8",
    "smallint": "int2", "int2": "int2", "character varying": "varchar", "varchar": "varchar",
    "char": "bpchar", "character": "bpchar", "bpchar": "bpchar", "decimal": "numeric",
    "numeric": "numeric", "timestamp without time zone": "timestamp", "timestamp": "timestamp",
    "timestamp with time zone": "timestamptz", "timestamptz": "timestamptz", "bit varying": "varbit",
    "varbit": "varbit", "text": "text", "cidr": "cidr", "inet": "inet", "float8": "float8",
    "double precision": "float8", "real": "float4", "float4": "float4", "bool": "bool", "boolean": "bool",
}


_DISPLAY = {"int8": "bigint", "int4": "integer", "int2": "smallint", "bpchar": "char", "float8": "double precision",
            "float4": "real", "bool": "boolean"}


def shown(name: str) -> str:
    return _DISPLAY.get(name, name)


def norm(name: str) -> str:
    return ALIASES.get(name.lower(), name.lower())


def verdict(old: Column, new: str, mods: tuple[int, ...], array: bool, pg: int) -> tuple[str, str]:
    """('safe' | 'conditional' | 'rewrite', why) for changing ``old`` to ``new(mods)``."""
    before, after = norm(old.type), norm(new)
    if array != old.array:
        return "rewrite", "array-ness changes"
    if before == after and mods == old.typmods:
        return "safe", "same type"
    if before in ("varchar", "varbit") and after == before:
        if not mods or (old.typmods and mods[0] >= old.typmods[0]):
            return "safe", "the length limit grows or goes away"
        return "rewrite", "the length limit shrinks: every row is checked and the table rewritten"
    if (before == "varchar" and after == "text") or (before == "text" and after == "varchar" and not mods):
        return "safe", "varchar and text are binary-coercible"
    if before == "numeric" and after == "numeric":
        if not mods:
            return "safe", "the precision limit goes away"
        if old.typmods and len(old.typmods) == len(mods) and mods[0] >= old.typmods[0] and mods[1:] == old.typmods[1:]:
            return "safe", "the precision grows with the same scale"
        return "rewrite", "the scale changes or the precision shrinks"
    if before == "cidr" and after == "inet":
        return "safe", "cidr is binary-coercible to inet"
    if before == "timestamp" and after == "timestamptz":
        if pg >= 12:
            return "conditional", "no rewrite only when the session TimeZone is UTC (PG 12+)"
        return "rewrite", "before PG 12 timestamp -> timestamptz always rewrites"
    return "rewrite", f"{shown(old.type)} -> {shown(new)} is not binary-coercible"


def check(ctx: Ctx) -> Iterator[Hit]:
    for table, cmd in alter_cmds(ctx, "AT_AlterColumnType"):
        coldef = (cmd.get("def") or {}).get("ColumnDef", {})
        new, mods, array = type_of(coldef.get("typeName"))
        new_shown = shown(new) + (f"({', '.join(map(str, mods))})" if mods else "")
        col = str(cmd.get("name", ""))
        old = ctx.schema.column(table, col)
        fix = (f"Add a new column of type {new_shown}, dual-write from the application (or a trigger), backfill "
               "in batches, switch reads, then drop the old column.")
        if coldef.get("raw_default"):
            yield Hit(f"ALTER COLUMN {col} TYPE {new_shown} USING ... rewrites {table} under an ACCESS EXCLUSIVE lock.",
                      table=table, fix=fix)
            continue
        if old is None:
            yield Hit(f"ALTER COLUMN {col} TYPE {new_shown}: the old type of {table}.{col} is unknown to pgshift "
                      "(not created in the linted history); unless binary-coercible this rewrites the table "
                      "under an ACCESS EXCLUSIVE lock.", table=table, fix=fix, severity="warning")
            continue
        result, why = verdict(old, new, mods, array, ctx.pg_version)
        if result == "rewrite":
            yield Hit(f"ALTER COLUMN {col} TYPE {new_shown} rewrites {table} and rebuilds its indexes under an ACCESS "
                      f"EXCLUSIVE lock ({why}).", table=table, fix=fix)
        elif result == "conditional":
            yield Hit(f"ALTER COLUMN {col} TYPE {new_shown}: {why}; otherwise {table} is rewritten.", table=table,
                      severity="note", fix="SET timezone = 'UTC'; before the ALTER in the same migration.")


RULE = Rule(
    id="PS010", name="alter-column-type",
    summary="ALTER COLUMN TYPE that is not binary-coercible rewrites the table and its indexes.",
    lock="ACCESS EXCLUSIVE", blocks=("reads", "writes", "ddl"), rewrites=True, scans=True,
    versions="timestamp -> timestamptz skips the rewrite from PG 12 when TimeZone is UTC.",
    bad="ALTER TABLE users ALTER COLUMN id TYPE bigint;",
    good="ALTER TABLE users ALTER COLUMN email TYPE text;",
    safe="Safe without rewrite: varchar(n) -> varchar(m>n)/varchar/text, numeric(p,s) -> numeric(p2>p,s), "
    "cidr -> inet. Otherwise add a new column, dual-write, backfill in batches, swap.",
    severity="error", kinds=("AlterTableStmt",), check=check,
    subtypes=("AT_AlterColumnType",), impact_scaled=True,
    setup="CREATE TABLE users (id int PRIMARY KEY, email varchar(100));",
)
