"""A restored table of wide rows read back as pg_dump prints them, over pgshift's own connection.

``--restore-test`` proves a large table restored byte for byte: its restored rows, printed as pg_dump
prints them, must hash to the archive's digest. pg_dump writes those rows into a pipe that pgshift
reads; for wide rows the pipe is the cost (550 MB of bytea: 3.2 s, against 2.2 s for the server's
COPY alone). Reading the COPY rows over a connection of this process skips it (2.4 s there), but
costs one Python call per row, which loses on narrow rows (pgbench's 1M accounts: 1.4 s against
0.55 s). So only tables whose rows average ``WIDE_ROW_BYTES`` or more on disk are read here.

The session prints as pg_dump's does: its SETs, the archive's time zone and output settings, the
database's encoding, and pg_dump's own COPY statement (its column list leaves out dropped and
generated columns). A digest that differs anyway is not believed: the caller reads the table again
with pg_dump itself, whose answer decides. So this read can only make a correct copy's check faster,
never change its verdict.
"""

from __future__ import annotations

import hashlib

import psycopg
from psycopg import sql

from pgshift.db.connect import connect, with_dbname
from pgshift.safety.copydata import TableData, TableKey
from pgshift.safety.manifest import TableStat

WIDE_ROW_BYTES = 1024  # per row on disk (manifest: size with indexes and TOAST over rows)
READER_NAME = "pgshift-verify-read"

# pg_dump's own session (setup_connection in pg_dump.c), as far as it changes how rows print, and
# its timeouts, so that a database's own limits do not cancel a long read.
_PG_DUMP_SESSION = (
    "SET DateStyle = ISO", "SET IntervalStyle = postgres", "SET extra_float_digits = 3",
    "SET search_path = pg_catalog", "SET row_security = off", "SET statement_timeout = 0",
    "SET lock_timeout = 0", "SET idle_in_transaction_session_timeout = 0",
)


def has_wide_rows(table: TableStat) -> bool:
    return table.rows is not None and 0 < table.rows * WIDE_ROW_BYTES <= table.size_bytes


def read_rows(url: str, dbname: str, key: TableKey, *, timezone: str, encoding: str,
              settings: dict[str, str]) -> TableData | None:
    """The rows of table ``key`` in the restored database, counted and hashed as pg_dump would print
    them in ``encoding`` (the archive's) under ``timezone`` and ``settings`` (the archive's output
    settings); None if they could not be read (the caller then reads with pg_dump)."""
    try:
        with connect(with_dbname(url, dbname), application_name=READER_NAME, autocommit=True) as conn:
            for statement in _PG_DUMP_SESSION:
                conn.execute(statement)
            for name, value in {"TimeZone": timezone, "client_encoding": encoding, **settings}.items():
                conn.execute("SELECT set_config(%s, %s, false)", (name, value))
            if conn.info.server_version >= 170000:
                conn.execute("SET transaction_timeout = 0")
            row = conn.execute(
                "SELECT array_agg(a.attname::text ORDER BY a.attnum) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
                "     AND a.attgenerated = '' "
                "WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'r'", key).fetchone()
            if row is None or not row[0]:
                return None
            copy_out = sql.SQL("COPY {} ({}) TO STDOUT").format(
                sql.Identifier(*key), sql.SQL(", ").join(map(sql.Identifier, row[0])))
            digest = hashlib.sha256()
            rows = 0
            with conn.cursor().copy(copy_out) as copy:
                for data in copy:  # one row per message (the server's COPY sends each row on its own)
                    digest.update(data)
                    rows += 1
    except (psycopg.Error, UnicodeError):  # a name the archive's encoding cannot hold, too
        return None
    return TableData(rows, digest.hexdigest())
