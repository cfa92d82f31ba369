"""The tiny application the deploy tests roll out: ``/health`` and ``/query`` against the database.

``python app.py PORT VERSION DSN``: version "old" reads accounts(id, email); "new" also reads and writes
the status column the expand adds; "broken" is a new version whose health check fails.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

PORT, VERSION, DSN = int(sys.argv[1]), sys.argv[2], sys.argv[3]
QUERIES = {
    "old": "SELECT count(*) FROM accounts",
    "new": "SELECT count(*) FROM accounts WHERE status IS NOT NULL",
    "broken": "SELECT count(*) FROM accounts",
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        try:
            if self.path == "/health" and VERSION == "broken":
                raise RuntimeError("the broken version never becomes healthy")
            with psycopg.connect(DSN, autocommit=True, connect_timeout=3) as conn:
                row = conn.execute(QUERIES[VERSION]).fetchone()
            body, code = f"{VERSION} {row[0] if row else 0}\n", 200
        except Exception as exc:  # every failure is an HTTP 500 the deploy sees
            body, code = f"{type(exc).__name__}: {exc}\n", 500
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_args: object) -> None:
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
