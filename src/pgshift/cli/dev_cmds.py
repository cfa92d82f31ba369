"""`pgshift dev start|stop|url`: a local PostgreSQL for development, in .pgshift/dev."""

from __future__ import annotations

from pathlib import Path

import click

from pgshift import api
from pgshift.cli.common import handle_errors, stdout

DEFAULT_ROOT = Path(".pgshift") / "dev"


def _cluster(root: str | None) -> api.EmbeddedCluster:
    return api.EmbeddedCluster(Path(root) if root else Path.cwd() / DEFAULT_ROOT)


@click.group("dev")
def dev() -> None:
    """A local PostgreSQL server for development (socket + 127.0.0.1 only)."""


@dev.command("start")
@click.option("--root", default=None, help="Cluster directory (default .pgshift/dev).")
@handle_errors
def start(root: str | None) -> None:
    """Start (initialising on first use) and print its URL."""
    cluster = _cluster(root)
    state = cluster.start(tcp=True)
    stdout.print(f"PostgreSQL running ({state.version}) in {cluster.root}")
    click.echo(cluster.passfile_dsn())


@dev.command("stop")
@click.option("--root", default=None, help="Cluster directory (default .pgshift/dev).")
@click.option("--destroy", is_flag=True, help="Also delete the cluster's data.")
@handle_errors
def stop(root: str | None, destroy: bool) -> None:
    """Stop the development server."""
    cluster = _cluster(root)
    if destroy:
        cluster.destroy()
        stdout.print(f"Stopped and deleted {cluster.root}")
    else:
        cluster.stop()
        stdout.print(f"Stopped {cluster.root}")


@dev.command("url")
@click.option("--root", default=None, help="Cluster directory (default .pgshift/dev).")
@click.option("--socket", "use_socket", is_flag=True, help="Print the Unix-socket URL instead.")
@click.option("--show-password", is_flag=True,
              help="Put the password in the URL, for clients that cannot read a libpq passfile.")
@handle_errors
def url(root: str | None, use_socket: bool, show_password: bool) -> None:
    """Print the running server's URL (use: export DATABASE_URL=$(pgshift dev url))."""
    cluster = _cluster(root)
    if not cluster.is_running():
        from pgshift.errors import EmbeddedServerError

        raise EmbeddedServerError(f"No development server is running in {cluster.root}; run `pgshift dev start`.")
    if use_socket:
        click.echo(cluster.socket_dsn())
    else:
        click.echo(cluster.tcp_dsn() if show_password else cluster.passfile_dsn())


COMMANDS = [dev]
