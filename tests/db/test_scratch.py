"""Scratch databases (rehearse's clones, --restore-test's copies): a sweep drops one a killed run left,
never one whose run is alive, wherever that run's claim was made from."""

from __future__ import annotations

import re
import secrets
from typing import Any

import psycopg
from psycopg import sql

from pgshift.db.scratch import claim, mark, sweep_marked
from tests.conftest import PgServer

MARK = "pgshift test scratch: in progress"


def _exists(admin: psycopg.Connection[Any], name: str) -> bool:
    return admin.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone() == (1,)


def test_a_claim_made_from_another_database_keeps_the_scratch_from_a_sweep(pg_server: PgServer, db_url: str) -> None:
    """Two verifications of one database's backups, given different --database-url databases, claim and sweep
    from different databases: an advisory lock alone does not conflict across them."""
    name = f"pgshift_scratchtest_{secrets.token_hex(4)}"
    pattern = re.compile(re.escape(name))
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        mark(admin, name, MARK)
        try:
            with psycopg.connect(db_url, autocommit=True) as holder:  # another database than admin's
                claim(holder, name)
                assert sweep_marked(admin, MARK, pattern) == []
                assert _exists(admin, name)
            # The claimer is gone (a killed run): the next sweep drops it.
            assert sweep_marked(admin, MARK, pattern) == [name]
            assert not _exists(admin, name)
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def test_a_sweep_drops_every_unclaimed_match_and_leaves_the_rest(pg_server: PgServer, db_url: str) -> None:
    """In one sweep: a claimed scratch, the sweeper's own, and a marked database of another kind are left; the
    unclaimed ones after them are all dropped; the sweep holds no claim once done."""
    token = secrets.token_hex(3)
    here, claimed, own, other, first, second = (f"pgshift_scratchtest_{token}_{n}" for n in "zabcde")
    pattern = re.compile(rf"pgshift_scratchtest_{token}_[zabde]")  # c is marked but of another kind
    names = [here, claimed, own, other, first, second]
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        try:
            for name in names:  # pg_database lists them in this order (by oid)
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                mark(admin, name, MARK)
            with psycopg.connect(db_url, autocommit=True) as holder, \
                    psycopg.connect(pg_server.admin_url, autocommit=True) as holder_here:  # the sweeper's database
                claim(holder_here, here)
                claim(holder, claimed)
                assert sweep_marked(admin, MARK, pattern, own=own) == [first, second]
            assert [n for n in names if _exists(admin, n)] == [here, claimed, own, other]
            assert admin.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                 "AND pid = pg_backend_pid()").fetchone() == (0,)
        finally:
            for name in names:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
