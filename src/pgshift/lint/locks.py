"""The locks a statement takes, in the linter's names. The lock table (levels, what each blocks,
which statement takes which) is the statement analysis' (``pgshift.migrations.analysis``); the
linter adds what only its schema model knows: the table an index belongs to."""

from __future__ import annotations

from collections.abc import Iterable

from pgshift.migrations.analysis import BLOCKS as BLOCKS
from pgshift.migrations.analysis import LEVELS as LEVELS
from pgshift.migrations.analysis import Lock, TableName
from pgshift.migrations.analysis import describe_blocks as describe_blocks
from pgshift.migrations.analysis import stronger as stronger


def lint_name(name: TableName) -> str:
    """``schema.name``, without the ``public`` schema (as ``nodes.relname`` names a RangeVar)."""
    schema, table = name
    return table if not schema or schema == "public" else f"{schema}.{table}"


def named_locks(locks: Iterable[Lock], index_tables: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(table, lock level) pairs of the statement analysis' ``locks``, an index's lock on its table."""
    index_tables = index_tables or {}
    taken: list[tuple[str, str]] = []
    for lock in locks:
        name = lint_name(lock.relation)
        taken.append((index_tables.get(name, name) if lock.on_index else name, lock.level))
    return taken
