"""Entry point: ``pgshift``. Each command group lives in its own module, imported only when used,
so `pgshift migrate` does not pay for loading the linter, the rehearsal or the demo."""

from __future__ import annotations

import importlib
import warnings

import click

from pgshift import __version__

# command name -> module under pgshift.cli that defines it (in its COMMANDS list)
COMMAND_MODULES = {
    "init": "migrate_cmds", "new": "migrate_cmds", "status": "migrate_cmds", "migrate": "migrate_cmds",
    "rollback": "migrate_cmds", "validate": "migrate_cmds", "baseline": "migrate_cmds",
    "history": "migrate_cmds", "adopt": "migrate_cmds",
    "lint": "lint_cmds",
    "backup": "safety_cmds", "restore": "safety_cmds", "check": "safety_cmds",
    "contract": "ops_cmds", "abort": "ops_cmds", "backfill": "ops_cmds",
    "rehearse": "rehearse_cmds",
    "dev": "dev_cmds", "demo": "demo_cmds",
    "watch": "watch_cmds",
    "deploy": "deploy_cmds",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"pgshift.cli.{module_name}")
        for command in module.COMMANDS:
            if command.name == cmd_name:
                return command  # type: ignore[no-any-return]
        raise RuntimeError(f"pgshift.cli.{module_name} does not define the command {cmd_name!r}")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pgshift")
def cli() -> None:
    """Production-safe, zero-downtime PostgreSQL schema migrations.

    Exit codes: docs/exit-codes.md (0 ok, 1 findings/pending, 2 usage, 3+ one per failure).
    """


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """pgshift's own warnings (a degraded feature, e.g. the rewrite guard without a superuser) as one
    line on stderr, like the CLI's other warnings; anything else as Python prints it."""
    if category.__module__.startswith("pgshift."):
        click.echo(click.style("warning", fg="yellow") + f": {message}", err=True)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)  # type: ignore[arg-type]


_python_show_warning = warnings.showwarning


def main() -> None:
    warnings.showwarning = _show_warning
    cli(prog_name="pgshift")
