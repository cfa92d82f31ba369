"""Entry point: ``pgshift``. Each command group lives in its own module and is added here."""

from __future__ import annotations

import click

from pgshift import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pgshift")
def cli() -> None:
    """Production-safe, zero-downtime PostgreSQL schema migrations.

    Exit codes: docs/exit-codes.md (0 ok, 1 findings/pending, 2 usage, 3+ one per failure).
    """


def _register() -> None:
    from pgshift.cli import (
        demo_cmds, dev_cmds, lint_cmds, migrate_cmds, ops_cmds, rehearse_cmds, safety_cmds,
    )

    for module in (migrate_cmds, dev_cmds, demo_cmds, safety_cmds, ops_cmds, rehearse_cmds, lint_cmds):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="pgshift")
