"""`pgshift demo`."""

from __future__ import annotations

from pathlib import Path

import click

from pgshift import api
from pgshift.cli.common import handle_errors, stdout


@click.command("demo")
@click.option("--keep", "keep_dir", type=click.Path(file_okay=False), default=None,
              help="Keep the demo's files (migrations, cluster data) in this folder.")
@handle_errors
def demo(keep_dir: str | None) -> None:
    """Run the playbook's example migrations on an embedded PostgreSQL, then stop it."""
    api.run_demo(lambda text: stdout.print(text, markup=False, highlight=False),
             workdir=Path(keep_dir) if keep_dir else None)


COMMANDS = [demo]
