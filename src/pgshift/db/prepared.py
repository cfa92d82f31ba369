"""Prepared transactions (PREPARE TRANSACTION): no session holds one, so pg_stat_activity does not show
it, yet it keeps its locks until someone commits or rolls it back.

Its relation locks in pg_locks have no pid; the lock on its own transaction ID has the same
virtualtransaction and carries the xid that pg_prepared_xacts lists (the join both the step engine's
blocker report and `check` make).
"""

from __future__ import annotations


def quoted_gid(gid: str) -> str:
    """``gid`` as an SQL string literal."""
    return "'" + gid.replace("'", "''") + "'"


def how_to_end(gid: str) -> str:
    """The two statements that end the prepared transaction ``gid``, either of which releases its locks."""
    return f"COMMIT PREPARED {quoted_gid(gid)} or ROLLBACK PREPARED {quoted_gid(gid)}"
