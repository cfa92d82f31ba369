"""Options every command shares, and the one place errors become messages and exit codes."""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pgshift.config import FORMATS, load_settings
from pgshift.errors import ConnectionFailed, Interrupted, PgshiftError, ServerRefused, from_os_error, server_message

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])
_consoles: dict[str, Console] = {}


def __getattr__(name: str) -> Console:
    """``stdout`` and ``stderr``: rich consoles made on first use, so a command printing no rich
    output (``lint -o json`` of a CI job) does not import rich (a fifth of its start-up)."""
    if name not in ("stdout", "stderr"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _consoles:
        from rich.console import Console

        _consoles[name] = Console(stderr=name == "stderr", highlight=False, soft_wrap=True)
    return _consoles[name]


def settings_options(func: F) -> F:
    """--config, --database-url, --dir, --format: turned into a Settings as ``settings``."""

    @click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                  help="Settings file (default: pgshift.toml or [tool.pgshift] in pyproject.toml).")
    @click.option("--database-url", "-d", default=None, envvar=None,
                  help="Connection URL; overrides database_url and DATABASE_URL.")
    @click.option("--dir", "migrations_dir", default=None, help="The migrations folder.")
    @click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
                  help="The folder's format (default: detected).")
    @functools.wraps(func)
    def wrapper(*args: Any, config_path: str | None, database_url: str | None,
                migrations_dir: str | None, fmt: str | None, **kwargs: Any) -> Any:
        overrides = {"database_url": database_url, "migrations_dir": migrations_dir, "format": fmt}
        try:
            settings = load_settings(config_path, overrides=overrides)
        except PgshiftError as exc:
            fail(exc)
        # One line on stderr, so --json output on stdout stays machine-readable.
        kwargs["settings"] = dataclasses.replace(
            settings, announce=lambda message: click.echo(click.style("· ", dim=True) + message, err=True))
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def handle_errors(func: F) -> F:
    """Print a PgshiftError as one paragraph on stderr and exit with its code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            fail(Interrupted("Interrupted; the running transaction was rolled back."))
        except Exception as exc:
            if _while_interrupted(exc):
                # Cleaning up after Ctrl-C / SIGTERM failed (a session left mid-statement by the interrupt):
                # the user stopped the command, and that is what it reports.
                fail(Interrupted(f"Interrupted; the running transaction was rolled back. (Cleaning up after the "
                                 f"interrupt: {str(exc).strip()})"))
            return _fail_for(exc)

    return wrapper  # type: ignore[return-value]


def _while_interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a KeyboardInterrupt unwound (its context chain holds one)."""
    seen: set[int] = set()
    link: BaseException | None = exc.__context__
    while link is not None and id(link) not in seen:
        if isinstance(link, KeyboardInterrupt):
            return True
        seen.add(id(link))
        link = link.__context__
    return False


def _fail_for(error: Exception) -> Any:
    """Exit as ``error`` says (a PgshiftError, a gone reader, a full disk, a server error), or raise it
    again when it is pgshift's own bug (its traceback kept)."""
    try:
        raise error
    except PgshiftError as exc:
        fail(exc)
    except BrokenPipeError:
        # The reader went away (`pgshift lint | head`): stop quietly, like other CLI tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except OSError as exc:
        if exc.filename is None and exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        fail(from_os_error(exc))
    except Exception as exc:
        # psycopg is imported only by commands that connect; `lint` should not pay for it.
        psycopg = sys.modules.get("psycopg")
        if psycopg is None or not isinstance(exc, psycopg.Error):
            raise
        sqlstate = getattr(exc, "sqlstate", None) or ""
        if not isinstance(exc, psycopg.OperationalError):
            if not sqlstate:
                raise  # a client-side misuse is pgshift's bug: keep the traceback
            fail(_refused(exc))
        if sqlstate and not sqlstate.startswith(("08", "57P")):
            fail(_refused(exc))  # the server ended a statement (a timeout, a lock), not the connection
        fail(ConnectionFailed(
            f"The connection to the server was lost: {server_message(exc)}. Whatever transaction "
            "was open was rolled back by the server; run the command again to continue."
        ))


_REFUSED_HINTS = {
    "42501": "grant the user pgshift connects as what it needs (CREATE on the database for the history schema, "
             "or ownership of the tables it changes), or connect as the schema's owner.",
    "25006": "connect to the primary server: this one is read-only (a standby, or default_transaction_read_only).",
    "57014": "a statement_timeout ended it: pgshift's own (statement_timeout in pgshift.toml), or one the database "
             "or role keeps for every session (`SELECT setting, source FROM pg_settings WHERE name = "
             "'statement_timeout'` shows which); raise it, or lift it for the role pgshift connects as.",
    "55P03": "another session holds a lock pgshift needed; `pgshift check` lists the sessions holding locks.",
}


def _refused(exc: Any) -> ServerRefused:
    """A server error that escaped the command: one paragraph with the server's DETAIL and HINT, no traceback."""
    sqlstate = getattr(exc, "sqlstate", None)
    return ServerRefused(f"The server refused a statement pgshift needed: {server_message(exc)} (SQLSTATE {sqlstate}).",
                         hint=_REFUSED_HINTS.get(sqlstate or ""))


def fail(exc: PgshiftError) -> None:
    from pgshift import api

    message = api.mask_password(str(exc))
    if _json_requested():
        click.echo(json.dumps({"error": {"code": exc.code, "message": message}}), err=True)
    else:
        from rich.markup import escape

        # Escaped: messages quote names and SQL, and "[/]" in either would be taken for markup.
        __getattr__("stderr").print(f"[bold red]error[/] [dim]({exc.code})[/]: {escape(message)}", markup=True,
                     highlight=False)
    sys.exit(exc.exit_code)


def _json_requested() -> bool:
    """--json, or lint's `-o json` (the same output for a machine: its error must parse too)."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and (ctx.params.get("as_json") or ctx.params.get("output") == "json"))


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")(func)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))

