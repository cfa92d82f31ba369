"""The embedded cluster, including the pgserver wheel fallback."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import psycopg
import pytest

from pgshift.embedded import EmbeddedCluster, find_bindir, pgserver_bindir
from pgshift.errors import EmbeddedServerError


def test_pgserver_wheel_binaries_run_a_cluster() -> None:
    bindir = pgserver_bindir()
    assert bindir is not None and (bindir / "postgres").exists(), "make test installs the embedded extra (pgserver)"
    root = Path(tempfile.mkdtemp(prefix="pgshift-test-pgserver-"))
    cluster = EmbeddedCluster(root, bindir=bindir)
    try:
        cluster.start(tcp=False)
        with psycopg.connect(cluster.socket_dsn(), autocommit=True) as conn:
            assert conn.info.server_version >= 160000
        assert cluster.is_running()
    finally:
        cluster.destroy()
    assert not root.exists()


def test_server_listens_on_loopback_only_and_needs_a_password() -> None:
    root = Path(tempfile.mkdtemp(prefix="pgshift-test-tcp-"))
    cluster = EmbeddedCluster(root)
    try:
        cluster.start(tcp=True)
        with psycopg.connect(cluster.socket_dsn()) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        with psycopg.connect(cluster.passfile_dsn()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(cluster.tcp_dsn(password="wrong"))
        assert (root / "pgpass").stat().st_mode & 0o777 == 0o600
    finally:
        cluster.destroy()


def test_missing_binaries_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("pgshift.embedded._PACKAGE_GLOBS", ())
    monkeypatch.setattr("pgshift.embedded.pgserver_bindir", lambda: None)
    monkeypatch.delenv("PGSHIFT_PG_BINDIR", raising=False)
    with pytest.raises(EmbeddedServerError, match=r"No PostgreSQL server binaries[\s\S]*not installed") as caught:
        find_bindir()
    assert "pip install 'pgshift[embedded]'" in (caught.value.hint or "")
    assert os.environ["PATH"] == str(tmp_path)
