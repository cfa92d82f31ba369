"""The server and databases behind the plugin's fixtures, and the step-by-step migrator."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo, sql

from pgshift import api
from pgshift.config import Settings
from pgshift.embedded import EmbeddedCluster


@dataclass
class TestServer:
    """A superuser URL to a server the tests may create and drop databases on."""

    __test__ = False  # not a test class, whatever pytest's naming rules say

    admin_url: str
    cluster: EmbeddedCluster | None = None
    root: Path | None = None

    @classmethod
    def start(cls) -> TestServer:
        external = os.environ.get("PGSHIFT_TEST_DSN")
        if external:
            return cls(external)
        # Not under pytest's basetemp, which a concurrent run may prune under a live cluster.
        root = Path(tempfile.mkdtemp(prefix="pgshift-plugin-cluster-"))
        cluster = EmbeddedCluster(root)
        cluster.start(tcp=False)
        return cls(cluster.socket_dsn(), cluster, root)

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.destroy()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def url_for(self, dbname: str) -> str:
        params: dict[str, Any] = conninfo.conninfo_to_dict(self.admin_url)
        params["dbname"] = dbname
        return conninfo.make_conninfo(**params)

    def create_database(self, template: str = "template0") -> str:
        name = f"pgshift_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                          sql.Identifier(template)))
        return name

    def drop_database(self, name: str, *, template: bool = False) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            if template:
                conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def settings_for(settings: Settings, url: str) -> Settings:
    """The project's settings pointed at one test database, with nothing that reaches outside it."""
    return dataclasses.replace(settings, database_url=url, migrate_url=None, announce=None,
                               ledger=dataclasses.replace(settings.ledger, mirror=None))


def migrated_template(server: TestServer, settings: Settings) -> str:
    """A database migrated to head and marked a template (no connection may stay open on it)."""
    name = server.create_database()
    api.migrate(settings_for(settings, server.url_for(name)))
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(sql.Identifier(name)))
    return name


class Migrator:
    """Drive one database through the history: migrate to a version, roll back, write data between."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings_for(settings, url)
        self._conn: psycopg.Connection[Any] | None = None

    def migrate(self, to: str | None = None) -> api.MigrateReport:
        return api.migrate(self.settings, to=to)

    def rollback(self, *, to: str | None = None, steps: int = 1) -> api.RollbackReport:
        return api.rollback(self.settings, to=to, steps=steps)

    def applied(self) -> list[str]:
        """The versions the ledger records as applied, oldest first."""
        return [m.version for m in api.status(self.settings).plan.applied]

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True)
        return self._conn

    def execute(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement on the database (autocommit); its rows, if it returns any."""
        cur = self.conn.execute(query.encode() if params is None else query, params)
        return cur.fetchall() if cur.description else []

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
