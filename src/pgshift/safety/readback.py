"""A restored table's rows read back as pg_dump prints them, by two sessions at once.

``--restore-test`` proves a large table restored byte for byte: its restored rows, printed as pg_dump
prints them, must hash to the archive's digest. The server turning rows into COPY text is the cost
(one backend: about 3 s for 550 MB of bytea). On PostgreSQL 14+ two psql sessions each read half of
the table's pages (a TID range scan keeps the physical order a sequential scan has); the first half
is hashed as it comes while the second is written to a temporary file, which is hashed after it.

The sessions print as pg_dump's does: its SETs, the archive's time zone and output settings, the
database's encoding, and pg_dump's column list (no dropped or generated columns). A digest that
differs anyway is not believed: the caller reads the table again with pg_dump itself, whose answer
decides. So this read can only make a correct copy's check faster, never turn its verdict.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO

from psycopg import sql

from pgshift.db.connect import connect, with_dbname
from pgshift.safety.copydata import TableData, TableKey
from pgshift.safety.tools import Tool, child_env, die_with_parent

_CHUNK = 1 << 20
TID_RANGE_SCAN = 14  # the first major that reads ``ctid >= a AND ctid < b`` without scanning the rest
READER_NAME = "pgshift-verify-read"

# pg_dump's own session (setup_connection in pg_dump.c), as far as it changes how rows print; the
# timeouts so that a database's own limits do not cancel a long read; and no parallel plan, which
# would interleave the rows of a half.
_PG_DUMP_SESSION = (
    "SET DateStyle = ISO", "SET IntervalStyle = postgres", "SET extra_float_digits = 3",
    "SET search_path = pg_catalog", "SET synchronize_seqscans = off", "SET row_security = off",
    "SET statement_timeout = 0", "SET lock_timeout = 0", "SET idle_in_transaction_session_timeout = 0",
    "SET max_parallel_workers_per_gather = 0",
)


def copy_statements(url: str, dbname: str, keys: Sequence[TableKey]) -> tuple[str, dict[TableKey, list[str]]]:
    """The session's setup, and for each plain table among ``keys`` the COPY statements that print its
    rows in pg_dump's text in its physical order: split at half its pages where the server reads TID
    ranges, one statement otherwise. A table missing, or not a plain table, gets none."""
    plans: dict[TableKey, list[str]] = {}
    with connect(with_dbname(url, dbname), application_name=READER_NAME, autocommit=True) as conn:
        major = conn.info.server_version // 10000
        setup = "; ".join(_PG_DUMP_SESSION + (("SET transaction_timeout = 0",) if major >= 17 else ()))
        for schema, name in keys:
            row = conn.execute(
                "SELECT pg_relation_size(c.oid) / current_setting('block_size')::bigint, "
                "       array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
                "     AND a.attgenerated = '' "
                "WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'r' GROUP BY c.oid",
                (schema, name)).fetchone()
            if row is None:
                continue
            pages, columns = int(row[0]), list(row[1] or [])
            source = sql.SQL("SELECT {} FROM ONLY {}").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(schema, name))
            if major >= TID_RANGE_SCAN and pages >= 2:
                middle = sql.Literal(f"({pages // 2},0)")
                halves = [sql.SQL("{} WHERE ctid < {}::tid").format(source, middle),
                          sql.SQL("{} WHERE ctid >= {}::tid").format(source, middle)]
            else:
                halves = [source]
            plans[(schema, name)] = [sql.SQL("COPY ({}) TO STDOUT").format(q).as_string(conn) for q in halves]
    return setup, plans


def read_rows(psql: Tool, conninfo: str, env: dict[str, str], encoding: str, setup: str,
              statements: Sequence[str], codec: str) -> TableData | None:
    """Run ``statements`` at once, one psql each after ``setup``, and count and hash their output in
    order; None if any could not run or failed (the caller then reads with pg_dump). ``encoding`` is the
    client encoding the archive's rows are in (PostgreSQL's name); ``codec`` the Python codec for it."""
    try:
        argvs: list[list[str | bytes]] = [
            [str(psql.path), "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", f"--dbname={conninfo}",
             "-c", setup.encode(codec), "-c", statement.encode(codec)] for statement in statements]
    except UnicodeEncodeError:
        return None
    reader_env = child_env({**env, "PGCLIENTENCODING": encoding, "PGAPPNAME": READER_NAME})
    digest = hashlib.sha256()
    rows = 0
    with contextlib.ExitStack() as stack:
        spools = [stack.enter_context(tempfile.TemporaryFile()) for _ in argvs[1:]]
        procs: list[subprocess.Popen[bytes]] = []
        stack.callback(_stop, procs)
        try:
            for argv, spool in zip(argvs[1:], spools, strict=True):
                procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=spool,
                                              stderr=subprocess.DEVNULL, env=reader_env,
                                              preexec_fn=die_with_parent()))
            first = subprocess.Popen(argvs[0], bufsize=0, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=reader_env, preexec_fn=die_with_parent())
            procs.insert(0, first)
        except OSError:
            return None
        assert first.stdout is not None
        with first.stdout:
            rows += _hash_stream(first.stdout, digest)
        if any(proc.wait() != 0 for proc in procs):
            return None
        for spool in spools:
            spool.seek(0)
            rows += _hash_stream(spool, digest)
    return TableData(rows, digest.hexdigest())


def _hash_stream(stream: IO[bytes], digest: hashlib._Hash) -> int:
    """Hash all of ``stream`` into ``digest`` through one reused buffer; the lines it held."""
    rows = 0
    buf = bytearray(_CHUNK)
    with memoryview(buf) as view:
        for got in _reads(stream.fileno(), view):
            with view[:got] as part:
                digest.update(part)
            rows += buf.count(b"\n", 0, got)
    return rows


def _reads(fd: int, view: memoryview) -> Iterator[int]:
    while got := os.readv(fd, [view]):
        yield got


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """No reader outlives the read (an exception, or a failed part that ends the others' use)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.SubprocessError):
            proc.wait(timeout=10)

