"""What kind of statement is this, for the runner: read from the statement's facts
(``pgshift.migrations.analysis``), never from regular expressions. The first word only spares the
parse of statements, such as INSERTs, that cannot be of a kind asked about."""

from __future__ import annotations

from pgshift.migrations.analysis import NOTHING, StatementFacts, analyse
from pgshift.migrations.analysis import IndexTarget as IndexTarget  # the runner imports it from here
from pgshift.migrations.splitter import first_word

# Only statements starting with one of these words can be transaction control or need autocommit:
# any other (INSERT, UPDATE, COPY...: most of a data migration) is classified without a parse.
TRANSACTION_WORDS = frozenset({
    "ABORT", "BEGIN", "COMMIT", "END", "PREPARE", "RELEASE", "ROLLBACK", "SAVEPOINT", "START",
})
_CLASSIFIED_WORDS = TRANSACTION_WORDS | {"ALTER", "CREATE", "DROP", "REINDEX", "VACUUM"}


def may_be_transaction_control(sql: str) -> bool:
    """False when the first word rules out BEGIN / COMMIT / SAVEPOINT ... without a parse."""
    word = first_word(sql)
    return word is None or word in TRANSACTION_WORDS


def _facts(sql: str) -> StatementFacts:
    word = first_word(sql)
    if word is not None and word not in _CLASSIFIED_WORDS:
        return NOTHING
    return analyse(sql)


def autocommit_reason(sql: str, server_major: int) -> str | None:
    """Why ``sql`` cannot run inside a transaction block on this server, or None if it can."""
    return _facts(sql).autocommit_reason(server_major)


def transaction_control(sql: str) -> str | None:
    """'begin', 'commit' or 'rollback' for a transaction-control statement, else None."""
    return _facts(sql).transaction


def concurrent_index(sql: str) -> IndexTarget | None:
    """The index named by CREATE INDEX CONCURRENTLY / DROP INDEX CONCURRENTLY."""
    return _facts(sql).concurrent_index


def transaction_modes(sql: str) -> str | None:
    """The modes of a BEGIN / START TRANSACTION (``ISOLATION LEVEL SERIALIZABLE, READ ONLY``), or None."""
    return _facts(sql).modes
