"""Shared set-up for the safety tests: settings pointing at the test cluster's own tools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from pgshift.config import BackupSettings, Settings


def make_settings(tmp_path: Path, url: str, pg_server: Any, **backup: Any) -> Settings:
    bindir = str(pg_server.cluster.bindir) if pg_server.cluster is not None else None
    return Settings(database_url=url, base_dir=tmp_path,
                    backup=BackupSettings(directory=str(tmp_path / "backups"), pg_bindir=bindir, **backup))


def seed(url: str, rows: int = 500) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric(12,2), "
            "opened timestamptz DEFAULT now(), tags text[])"
        )
        conn.execute("CREATE INDEX accounts_owner ON accounts (owner)")
        conn.execute(
            "INSERT INTO accounts SELECT g, 'owner ' || g, g * 1.5, "
            "'2024-01-01'::timestamptz + g * interval '1 hour', ARRAY['a', g::text] "
            "FROM generate_series(1, %s) g", (rows,)
        )
        conn.execute("CREATE TABLE trades (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                     "account int REFERENCES accounts, qty float8)")
        conn.execute("INSERT INTO trades (account, qty) SELECT 1 + g %% %s, g / 7.0 "
                     "FROM generate_series(1, 300) g", (min(rows, 50),))
        conn.execute("CREATE SCHEMA audit")
        conn.execute("CREATE TABLE audit.\"Weird Name\" (x int)")
        conn.execute("INSERT INTO audit.\"Weird Name\" VALUES (1), (2), (NULL)")


def count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


class HealthServer:
    """A tiny HTTP server on 127.0.0.1 answering ``status`` to every GET (for health URLs)."""

    def __init__(self, status: int = 200) -> None:
        import http.server
        import threading

        outer = self
        self.status = status
        self.hits = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                self.send_response(outer.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def databases(url: str, like: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (like,))]
