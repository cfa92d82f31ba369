"""A fleet for the `--targets` tests: databases on two real PostgreSQL clusters (the suite's
``pg_server`` and a second embedded cluster of this package's own)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from pgshift.embedded import EmbeddedCluster
from tests.conftest import PgServer


@pytest.fixture(scope="session")
def second_server() -> Iterator[PgServer]:
    root = Path(tempfile.mkdtemp(prefix="pgshift-test-fleet-"))
    cluster = EmbeddedCluster(root)
    cluster.start(tcp=True)
    try:
        yield PgServer(cluster.socket_dsn(), cluster)
    finally:
        cluster.destroy()


@dataclass
class Member:
    server: PgServer
    dbname: str
    url: str  # a TCP URL with the password in it, as users write them (never to be printed)

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.server.url_for(self.dbname), autocommit=True)


class Fleet:
    """Creates databases alternately on both servers and drops them at the end."""

    def __init__(self, servers: list[PgServer]) -> None:
        self.servers = servers
        self.members: list[Member] = []

    def create(self, count: int) -> list[Member]:
        made = []
        for i in range(count):
            server = self.servers[i % len(self.servers)]
            name = server.create_database()
            made.append(Member(server, name, server.tcp_url_for(name) if server.cluster else server.url_for(name)))
        self.members.extend(made)
        return made

    def write(self, path: Path, members: list[Member], *, named: bool = False) -> Path:
        lines = ["# the fleet of this test", ""]
        lines += [f"{m.dbname} {m.url}" if named else m.url for m in members]
        path.write_text("\n".join(lines) + "\n")
        return path

    def drop(self) -> None:
        for m in self.members:
            m.server.drop_database(m.dbname)


@pytest.fixture
def fleet(pg_server: PgServer, second_server: PgServer) -> Iterator[Fleet]:
    made = Fleet([pg_server, second_server])
    try:
        yield made
    finally:
        made.drop()
