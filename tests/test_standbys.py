"""Streaming standbys, real ones (tests/standby.py): `migrate` waiting until every standby replayed what
it applied, `check` reporting each standby and the queries a migration's ACCESS EXCLUSIVE lock would
cancel or wait for there, and what a rehearsal clone and a restore's swap cost in WAL."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import psycopg

from tests.helpers import run_pgshift, start_pgshift, write_migration
from tests.standby import Replicated, until


def _on_standby(rep: Replicated, dbname: str, query: str) -> object:
    with psycopg.connect(rep.standby_url(dbname), autocommit=True) as conn:
        row = conn.execute(query).fetchone()
        return row[0] if row else None


def test_migrate_waits_for_a_paused_standby_and_fails_naming_it(tmp_path: Path, replicated: Replicated,
                                                               replicated_db: str) -> None:
    url = replicated.primary_url(replicated_db)
    (tmp_path / "pgshift.toml").write_text('migrations_dir = "migrations"\n[migrate]\nwait_for_standbys = "1s"\n')
    write_migration(tmp_path / "migrations", "001", "accounts", "CREATE TABLE accounts (id int PRIMARY KEY);",
                    "DROP TABLE accounts;")
    with replicated.paused_replay():
        started = time.monotonic()
        failed = run_pgshift(["migrate"], cwd=tmp_path, url=url)
        waited = time.monotonic() - started
        assert failed.returncode == 33, failed.stdout + failed.stderr
        assert "standby-not-replayed" in failed.stderr
        message = " ".join(failed.stderr.split())
        assert re.search(r"1 standby\(s\) had not replayed the migrations \(WAL position [0-9A-F]+/[0-9A-F]+\) "
                         r"within migrate.wait_for_standbys = 1s: walreceiver \(local, walsender pid \d+, "
                         r"streaming\) has replayed up to [0-9A-F]+/[0-9A-F]+, \d+ bytes short", message), message
        assert "pg_is_wal_replay_paused()" in message and "run `pgshift migrate` again" in message
        assert waited >= 1.0
        status = run_pgshift(["status", "--json"], cwd=tmp_path, url=url)
        assert json.loads(status.stdout)["migrations"][0]["state"] == "applied"  # applied stays applied
        assert _on_standby(replicated, replicated_db, "SELECT to_regclass('accounts')") is None


def test_migrate_returns_once_every_standby_replayed_the_migration(tmp_path: Path, replicated: Replicated,
                                                                  replicated_db: str) -> None:
    url = replicated.primary_url(replicated_db)
    (tmp_path / "pgshift.toml").write_text('migrations_dir = "migrations"\n[migrate]\nwait_for_standbys = "60s"\n')
    write_migration(tmp_path / "migrations", "001", "accounts", "CREATE TABLE accounts (id int PRIMARY KEY);",
                    "DROP TABLE accounts;")
    with replicated.paused_replay() as resume:
        proc = start_pgshift(["migrate"], cwd=tmp_path, url=url)
        with psycopg.connect(url, autocommit=True) as conn:  # applied on the primary, and still waiting
            until(lambda: conn.execute("SELECT to_regclass('accounts')").fetchone() != (None,), 30)
        time.sleep(1.5)
        assert proc.poll() is None
        threading.Timer(0.5, resume).start()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, out + err
        # The moment migrate returned, the standby's readers see the new schema.
        assert _on_standby(replicated, replicated_db, "SELECT to_regclass('accounts')::text") == "accounts"
    assert "waiting up to 60s for 1 standby(s) to replay" in err
    assert re.search(r"replayed on every standby: walreceiver \(local, walsender pid \d+\)", out), out
    again = run_pgshift(["migrate"], cwd=tmp_path, url=url)  # nothing pending: only waits, at once here
    assert again.returncode == 0 and "nothing to migrate" in again.stdout, again.stderr


def test_the_standby_settings_are_validated_naming_the_key(tmp_path: Path) -> None:
    cases = {
        '[migrate]\nwait_for_standbys = "soon"\n': r"migrate.wait_for_standbys in .*pgshift.toml must be a duration",
        '[backfill]\nmax_lag_bytes = "lots"\n': r"backfill.max_lag_bytes in .*pgshift.toml must be a size",
        '[backfill]\nmax_lag = true\n': r"backfill.max_lag in .*pgshift.toml must be a quoted duration",
        'standby_urls = "postgresql:///x"\nstandby_urls_typo = 1\n': r"Unknown setting 'standby_urls_typo'",
        'standby_urls = [1]\n': r"standby_urls in .*pgshift.toml must be a list of strings",
        'standby_urls = [" "]\n': r"standby_urls in .*pgshift.toml must not hold an empty URL",
    }
    for text, message in cases.items():
        (tmp_path / "pgshift.toml").write_text(text)
        result = run_pgshift(["check"], cwd=tmp_path, url="postgresql:///nowhere")
        assert result.returncode == 3, (text, result.stderr)
        assert re.search(message, " ".join(result.stderr.split())), (text, result.stderr)
