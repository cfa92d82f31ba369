"""Row triggers that keep old and new columns in sync while both app versions run.

Which version wrote a row: an UPDATE is judged by value (which of the two columns changed); an
INSERT by the writer's search_path — the new version selects its schema with the version schema
first on the search_path (see docs/ops.md), everything else is the old version. The backfill
touches rows with a no-op ``SET col = col``: neither column changed, so the trigger fills only a
new column that is still NULL, and never overwrites a value a writer has set.

``up`` is evaluated with the old version's column names, ``down`` with the new version's names:
the generated function declares one PL/pgSQL variable per column, bound to NEW's value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from psycopg import sql

from pgshift.runner.names import fit

RuleKind = Literal["pair", "fill", "down"]


@dataclass(frozen=True)
class SyncRule:
    """``pair``: target <-> source both ways (rename, type change). ``fill``: target := up for rows the
    old version writes (add_column, set_not_null). ``down``: hidden target := down for new-version inserts."""

    kind: RuleKind
    target: str
    source: str | None
    up: str | None
    down: str | None
    old_names: dict[str, str]  # variable name -> physical column
    new_names: dict[str, str]
    only_null: bool = False  # fill whenever the value is NULL, whoever writes
    extra: dict[str, str] = field(default_factory=dict)


def sync_names(version: str, index: int, table: str) -> tuple[str, str]:
    """(function, trigger): triggers fire in name order, which is the operations' order."""
    name = fit("_pgshift_sync", version, f"{index:02d}")
    return fit(name, table), name


def _mentions(expression: str, name: str) -> bool:
    """Does the expression refer to this column name? (Only those become variables, so a trigger does not
    depend on columns it never reads; a false positive only costs an unused variable.)"""
    return re.search(r'(?<![\w$"])' + re.escape(name) + r'(?![\w$"])', expression, re.IGNORECASE) is not None \
        or '"' + name.replace('"', '""') + '"' in expression


def _bind(table: sql.Identifier, names: dict[str, str], expression: str, target: str) -> sql.Composable:
    """A nested block whose variables carry NEW's values under the given names."""
    names = {var: phys for var, phys in names.items() if _mentions(expression, var)}
    if not names:
        return sql.SQL("NEW.{} := ({});").format(sql.Identifier(target), sql.SQL(expression))
    declarations = sql.SQL(" ").join(
        sql.SQL("{} {}%TYPE := NEW.{};").format(sql.Identifier(var), sql.Composed([table, sql.SQL("."),
                                                                               sql.Identifier(phys)]),
                                              sql.Identifier(phys))
        for var, phys in names.items())
    return sql.SQL("DECLARE {} BEGIN NEW.{} := ({}); END;").format(
        declarations, sql.Identifier(target), sql.SQL(expression))


def _body(table: sql.Identifier, rule: SyncRule) -> sql.Composable:
    new = sql.SQL("NEW.{}").format(sql.Identifier(rule.target))
    old = sql.SQL("OLD.{}").format(sql.Identifier(rule.target))
    if rule.kind == "pair":
        assert rule.source is not None and rule.up is not None and rule.down is not None
        src_new = sql.SQL("NEW.{}").format(sql.Identifier(rule.source))
        src_old = sql.SQL("OLD.{}").format(sql.Identifier(rule.source))
        up = _bind(table, rule.old_names, rule.up, rule.target)
        down = _bind(table, rule.new_names, rule.down, rule.source)
        return sql.SQL(
            "IF TG_OP = 'INSERT' THEN IF is_new OR ({s} IS NULL AND {n} IS NOT NULL) THEN {d} ELSE {u} END IF; "
            "ELSIF {n} IS DISTINCT FROM {o} AND {s} IS NOT DISTINCT FROM {so} THEN {d} "
            "ELSIF {s} IS DISTINCT FROM {so} AND {n} IS NOT DISTINCT FROM {o} THEN {u} "
            "ELSIF {s} IS DISTINCT FROM {so} THEN IF is_new THEN {d} ELSE {u} END IF; "
            "ELSIF {n} IS NULL THEN {u} END IF;").format(s=src_new, so=src_old, n=new, o=old, u=up, d=down)
    if rule.kind == "fill":
        assert rule.up is not None
        up = _bind(table, rule.old_names, rule.up, rule.target)
        if rule.only_null:
            return sql.SQL("IF {n} IS NULL THEN {u} END IF;").format(n=new, u=up)
        return sql.SQL(
            "IF TG_OP = 'INSERT' THEN IF NOT is_new THEN {u} END IF; "
            "ELSIF NOT is_new AND {n} IS NULL AND {o} IS NULL THEN {u} END IF;").format(n=new, o=old, u=up)
    assert rule.down is not None
    down = _bind(table, rule.new_names, rule.down, rule.target)
    return sql.SQL("IF TG_OP = 'INSERT' AND (is_new OR {n} IS NULL) THEN {d} END IF;").format(n=new, d=down)


def create_sync(table: sql.Identifier, function: sql.Identifier, trigger: sql.Identifier, rule: SyncRule,
                version_schema: str) -> list[sql.Composable]:
    body = sql.SQL("#variable_conflict use_variable\nDECLARE is_new boolean := {}; BEGIN {} RETURN NEW; END").format(
        sql.SQL("(current_schemas(false))[1] IS NOT DISTINCT FROM {}").format(sql.Literal(version_schema)),
        _body(table, rule))
    return [
        sql.SQL("CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS {}").format(
            function, _Deferred(body)),
        sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(trigger, table),
        sql.SQL("CREATE TRIGGER {} BEFORE INSERT OR UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
            trigger, table, function),
    ]


def drop_sync(table: sql.Identifier, function: sql.Identifier, trigger: sql.Identifier) -> list[sql.Composable]:
    return [sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(trigger, table),
            sql.SQL("DROP FUNCTION IF EXISTS {}()").format(function)]


class _Deferred(sql.Composable):
    """A composed function body rendered as a string literal (identifiers quoted by psycopg first)."""

    def __init__(self, body: sql.Composable) -> None:
        super().__init__(body)
        self._body = body

    def as_bytes(self, context: object = None) -> bytes:
        text = self._body.as_string(context)  # type: ignore[arg-type]
        return sql.Literal(text).as_bytes(context)  # type: ignore[arg-type]
