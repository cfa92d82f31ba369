"""PS066 syntax-not-on-target."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

from pgshift.lint.context import Ctx
from pgshift.lint.model import Hit, Rule
from pgshift.lint.nodes import Node, cmds, has_option, walk


@dataclass(frozen=True)
class Syntax:
    """A form PostgreSQL accepts only from ``since`` on, and where the release notes say so."""

    name: str
    since: int
    detect: Callable[[str, Node], bool]
    source: str
    # A word the statement's text must contain before its tree is searched (keeps lint linear and cheap).
    word: str = ""
    # The only statement kinds it can be found in (empty: any), so other statements skip it.
    kinds: tuple[str, ...] = ()


def _notes(version: int) -> str:
    return f"https://www.postgresql.org/docs/release/{version}.0/"


def _cmd(subtype: str) -> Callable[[str, Node], bool]:
    return lambda k, b: k == "AlterTableStmt" and any(c.get("subtype") == subtype for c in cmds(b))


def _node(name: str) -> Callable[[str, Node], bool]:
    return lambda _k, b: any(name in item for item in walk(b))


def _detach_concurrently(k: str, b: Node) -> bool:
    return k == "AlterTableStmt" and any(
        c.get("subtype") == "AT_DetachPartition" and ((c.get("def") or {}).get("PartitionCmd") or {}).get("concurrent")
        for c in cmds(b))


def _nulls_not_distinct(k: str, b: Node) -> bool:
    return (k == "IndexStmt" and bool(b.get("nulls_not_distinct"))) or any(
        (item.get("Constraint") or {}).get("nulls_not_distinct") for item in walk(b))


def _view_option(option: str) -> Callable[[str, Node], bool]:
    def detect(k: str, b: Node) -> bool:
        if k == "ViewStmt":
            return has_option(b.get("options"), option)
        return k == "AlterTableStmt" and any(has_option(c.get("def"), option) for c in cmds(b)
                                             if c.get("subtype") in ("AT_SetRelOptions", "AT_ResetRelOptions"))
    return detect


_ALTER = ("AlterTableStmt",)
# One table, oldest first, each with its release notes. PostgreSQL 12 is the oldest supported target.
SYNTAX: tuple[Syntax, ...] = (
    Syntax("REINDEX ... CONCURRENTLY", 12, lambda k, b: k == "ReindexStmt" and has_option(b.get("params"),
                                                                                         "concurrently"), _notes(12),
           kinds=("ReindexStmt",)),
    Syntax("GENERATED ALWAYS AS (...) STORED columns", 12,
           lambda _k, b: any((i.get("Constraint") or {}).get("contype") == "CONSTR_GENERATED" for i in walk(b)),
           _notes(12), "generated"),
    Syntax("ALTER COLUMN ... DROP EXPRESSION", 13, _cmd("AT_DropExpression"), _notes(13), kinds=_ALTER),
    Syntax("DETACH PARTITION ... CONCURRENTLY", 14, _detach_concurrently, _notes(14), kinds=_ALTER),
    Syntax("CREATE OR REPLACE TRIGGER", 14, lambda k, b: k == "CreateTrigStmt" and bool(b.get("replace")),
           _notes(14), kinds=("CreateTrigStmt",)),
    Syntax("ALTER COLUMN ... SET COMPRESSION", 14, _cmd("AT_SetCompression"), _notes(14), kinds=_ALTER),
    Syntax("MERGE", 15, lambda k, _b: k == "MergeStmt", _notes(15), kinds=("MergeStmt",)),
    Syntax("NULLS NOT DISTINCT", 15, _nulls_not_distinct, _notes(15), "distinct"),
    Syntax("SET ACCESS METHOD", 15, _cmd("AT_SetAccessMethod"), _notes(15), kinds=_ALTER),
    Syntax("views' security_invoker", 15, _view_option("security_invoker"), _notes(15),
           kinds=("ViewStmt", "AlterTableStmt")),
    Syntax("SQL/JSON constructors (JSON_OBJECT, JSON_ARRAY, ...)", 16,
           lambda _k, b: any(n in item for item in walk(b) for n in ("JsonObjectConstructor",
                                                                      "JsonArrayConstructor",
                                                                      "JsonArrayQueryConstructor",
                                                                      "JsonObjectAgg", "JsonArrayAgg")),
           _notes(16), "json_"),
    Syntax("JSON_TABLE", 17, _node("JsonTable"), _notes(17), "json_table"),
    Syntax("MERGE ... RETURNING", 17, lambda k, b: k == "MergeStmt" and bool(b.get("returningList")), _notes(17),
           kinds=("MergeStmt",)),
    Syntax("ALTER COLUMN ... SET EXPRESSION", 17, _cmd("AT_SetExpression"), _notes(17), kinds=_ALTER),
)


@cache
def _newer_than(version: int, kind: str) -> tuple[Syntax, ...]:
    """The forms a target of ``version`` lacks that a statement of ``kind`` can use (asked for every
    statement: chosen once per version and kind)."""
    return tuple(syntax for syntax in SYNTAX if version < syntax.since and (not syntax.kinds or kind in syntax.kinds))


def check(ctx: Ctx) -> Iterator[Hit]:
    text: str | None = None
    for syntax in _newer_than(ctx.pg_version, ctx.kind):
        if syntax.word:
            text = ctx.statement.sql.lower() if text is None else text
            if syntax.word not in text:
                continue
        if syntax.detect(ctx.kind, ctx.body):
            yield Hit(f"{syntax.name} exists from PostgreSQL {syntax.since}; on the target PostgreSQL "
                      f"{ctx.pg_version} the statement fails with a syntax or feature error ({syntax.source}).",
                      fix=f"Write it the way PostgreSQL {ctx.pg_version} accepts, or upgrade the server first "
                          "(--pg-version / lint.pg_version name the target).")


RULE = Rule(
    id="PS066", name="syntax-not-on-target",
    summary="A statement uses syntax the target PostgreSQL version does not have yet.",
    lock="", blocks=(), rewrites=False, scans=False,
    versions="The table in the rule lists each form with the release that added it (12 to 17).",
    bad="MERGE INTO accounts a USING staged s ON a.id = s.id WHEN MATCHED THEN UPDATE SET balance = s.balance;",
    good="UPDATE accounts a SET balance = s.balance FROM staged s WHERE a.id = s.id;",
    safe="Use the forms the oldest server you deploy to accepts.", severity="error", kinds=("*",), check=check,
    applies_to_new_tables=True, category="compatibility", example_version=14,
)
