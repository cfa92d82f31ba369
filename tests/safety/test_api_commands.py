"""The backup commands through pgshift.api, as a library user calls them: `latest` and backup
names resolved by the library, the URL required there, a restore asking before it replaces data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgshift import api
from pgshift.config import Settings
from pgshift.errors import BackupFailed, ConfigError

from .helpers import make_settings, seed


class Refused(Exception):
    pass


def test_latest_and_names_resolve_and_a_refused_restore_touches_nothing(
        pg_server: Any, db_name: str, db_url: str, tmp_path: Path) -> None:
    seed(db_url, rows=50)
    settings = make_settings(tmp_path, db_url, pg_server)
    taken = api.backup(settings).backup.path
    listing = api.list_backups(settings)
    assert [b.path for b in listing.backups] == [taken] and listing.incomplete == []
    assert api.verify_backup(settings, "latest").path == taken
    assert api.verify_backup(settings, taken.name).path == taken  # its name in backup.directory

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE trades SET qty = -1")
    questions: list[str] = []

    def refuse(question: str) -> None:
        questions.append(question)
        raise Refused

    with pytest.raises(Refused):
        api.restore_table(settings, "latest", "public.trades", confirm=refuse)
    with pytest.raises(Refused):
        api.restore_database(settings, "latest", confirm=refuse)
    assert questions == [f"Replace the rows of public.trades in database {db_name} on {_host(db_url)} with those "
                         f"of {taken.name}?",
                         f"Restore database {db_name} on {_host(db_url)} from {taken.name}? (the current database "
                         "is renamed and kept)"]
    assert _changed(db_url) == 300

    restored = api.restore_table(settings, "latest", "public.trades", confirm=questions.append)
    assert restored.rows == 300 and Path(restored.backup) == taken and _changed(db_url) == 0


def test_the_commands_that_connect_require_a_url_and_a_bad_name_names_both_places(tmp_path: Path) -> None:
    settings = Settings(base_dir=tmp_path)
    for command in (lambda: api.backup(settings), lambda: api.check(settings),
                    lambda: api.restore_database(settings, "latest"),
                    lambda: api.restore_table(settings, "latest", "t"),
                    lambda: api.verify_backup(settings, "latest", restore_test=True)):
        with pytest.raises(ConfigError, match="No database to connect to"):
            command()
    with pytest.raises(BackupFailed, match=r"No backup named nope: neither nope nor .*backups/nope exists"):
        api.verify_backup(settings, "nope")


def _changed(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM trades WHERE qty = -1").fetchone()
        return int(row[0]) if row else -1


def _host(url: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(url)
    return f"{params.get('host') or 'local socket'}" + (f":{params['port']}" if params.get("port") else "")
