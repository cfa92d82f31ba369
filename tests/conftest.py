"""Test databases on a real PostgreSQL.

One throwaway cluster per test worker (pgshift.embedded), or the external server named by
PGSHIFT_TEST_DSN, or a running embedded cluster whose folder PGSHIFT_TEST_CLUSTER names (the
mutation runner shares one between test runs). Each test that asks for ``db_url`` gets a fresh
database created from an empty template, and the database is dropped afterwards.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from psycopg import conninfo, sql

from pgshift.embedded import EmbeddedCluster

# Generating examples is timed by Hypothesis; on a 2-core machine shared with parallel test workers that
# health check fails runs whose properties all hold. What each property asserts is unchanged.
hypothesis_settings.register_profile("pgshift", deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("pgshift")


@dataclass
class PgServer:
    """How tests reach the server: an admin URL, and the embedded cluster when there is one."""

    admin_url: str
    cluster: EmbeddedCluster | None

    def url_for(self, dbname: str) -> str:
        params = conninfo.conninfo_to_dict(self.admin_url)
        params["dbname"] = dbname
        return conninfo.make_conninfo(**params)  # type: ignore[arg-type]

    def tcp_url_for(self, dbname: str, *, password: str | None = None) -> str:
        """A password-authenticated TCP URL (embedded cluster only)."""
        assert self.cluster is not None
        return self.cluster.tcp_dsn(dbname, password=password)

    def create_database(self, template: str = "template0") -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    external = os.environ.get("PGSHIFT_TEST_DSN")
    if external:
        yield PgServer(external, None)
        return
    shared = os.environ.get("PGSHIFT_TEST_CLUSTER")  # a running embedded cluster's folder (make mutation)
    if shared:
        cluster = EmbeddedCluster(shared)
        yield PgServer(cluster.socket_dsn(), cluster)
        return
    # Not under pytest's basetemp: a concurrent pytest run prunes old basetemp folders, and
    # would delete a live cluster's data directory.
    root = Path(tempfile.mkdtemp(prefix="pgshift-test-cluster-"))
    cluster = EmbeddedCluster(root)
    cluster.start(tcp=True)
    try:
        yield PgServer(cluster.socket_dsn(), cluster)
    finally:
        cluster.destroy()


@pytest.fixture
def db_name(pg_server: PgServer) -> Iterator[str]:
    name = pg_server.create_database()
    try:
        yield name
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def db_url(pg_server: PgServer, db_name: str) -> str:
    """A connection URL for a fresh, empty database of this test's own."""
    return pg_server.url_for(db_name)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


# A real streaming standby (module-scoped), for every test that asks for it.
from tests.standby import replicated, replicated_db  # noqa: E402,F401
