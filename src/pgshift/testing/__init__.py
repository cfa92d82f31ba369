"""pgshift's pytest plugin: fixtures for migration tests and built-in checks of a migrations folder.

Registered through the ``pytest11`` entry point, so it loads in every pytest run where pgshift is
installed. It imports only pytest here and does nothing until a test asks for one of its fixtures
or the built-in checks are switched on (``pytest --pgshift``, ``pgshift = true`` in the pytest
ini settings, or ``pgshift_builtin_tests = True`` in a conftest.py). docs/testing-plugin.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pgshift.config import Settings
    from pgshift.testing.builtin import Suite
    from pgshift.testing.server import Migrator, TestServer

SWITCH = "pgshift_builtin_tests"  # the conftest.py variable that switches the built-in checks on
_SUITE: pytest.StashKey[Suite] = pytest.StashKey()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pgshift", "pgshift migration tests")
    group.addoption("--pgshift", action="store_true", default=False,
                    help="run pgshift's built-in checks of the migrations folder")
    group.addoption("--pgshift-config", default=None, metavar="FILE",
                    help="pgshift.toml (or pyproject.toml) to read; default: the one found from the rootdir")
    group.addoption("--pgshift-ledger-dsn", default=None, metavar="URL",
                    help="an existing database whose ledger checksums must match the files "
                         "(or PGSHIFT_TEST_LEDGER_DSN)")
    parser.addini("pgshift", type="bool", default=False, help="run pgshift's built-in checks")


def _switched_on(config: pytest.Config) -> bool:
    if config.getoption("pgshift") or config.getini("pgshift"):
        return True
    return any(getattr(plugin, SWITCH, False) is True for plugin in config.pluginmanager.get_plugins())


def _settings(config: pytest.Config) -> Settings:
    from pgshift.config import load_settings

    path = config.getoption("pgshift_config")
    root = Path(str(config.rootpath))
    return load_settings(path, cwd=root)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _switched_on(config):
        return
    from pgshift.errors import PgshiftError
    from pgshift.testing.builtin import Suite, broken_settings, collect

    ledger = config.getoption("pgshift_ledger_dsn") or os.environ.get("PGSHIFT_TEST_LEDGER_DSN")
    try:
        settings = _settings(config)
    except PgshiftError as exc:  # one failing item with pgshift's message, not an INTERNALERROR
        items.append(broken_settings(session, exc))
        return
    suite = Suite(settings, ledger_dsn=ledger)
    config.stash[_SUITE] = suite
    items.extend(collect(session, suite))


def pytest_unconfigure(config: pytest.Config) -> None:
    suite = config.stash.get(_SUITE, None)
    if suite is not None:
        suite.close()


@pytest.fixture(scope="session")
def pgshift_settings(pytestconfig: pytest.Config) -> Settings:
    """The project's pgshift settings (folder, format, lint levels), without a database URL."""
    return _settings(pytestconfig)


@pytest.fixture(scope="session")
def pgshift_server() -> Iterator[TestServer]:
    """A PostgreSQL server for the session: PGSHIFT_TEST_DSN (a superuser URL) or an embedded one."""
    from pgshift.testing.server import TestServer

    server = TestServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _pgshift_head_template(pgshift_server: TestServer, pgshift_settings: Settings) -> Iterator[str]:
    """A database migrated to the newest migration once per session, to clone for each test."""
    from pgshift.testing.server import migrated_template

    name = migrated_template(pgshift_server, pgshift_settings)
    try:
        yield name
    finally:
        pgshift_server.drop_database(name, template=True)


@pytest.fixture
def pgshift_db(pgshift_server: TestServer, _pgshift_head_template: str) -> Iterator[str]:
    """The URL of a fresh database migrated to head (a copy of a template migrated once)."""
    name = pgshift_server.create_database(template=_pgshift_head_template)
    try:
        yield pgshift_server.url_for(name)
    finally:
        pgshift_server.drop_database(name)


@pytest.fixture
def pgshift_migrator(pgshift_server: TestServer, pgshift_settings: Settings) -> Iterator[Migrator]:
    """A fresh empty database to migrate step by step: ``migrate(to=...)``, ``rollback()``, ``execute()``."""
    from pgshift.testing.server import Migrator

    name = pgshift_server.create_database()
    migrator = Migrator(pgshift_server.url_for(name), pgshift_settings)
    try:
        yield migrator
    finally:
        migrator.close()
        pgshift_server.drop_database(name)

