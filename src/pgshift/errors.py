"""Every failure a user can cause has its own exception class, stable code and exit code.

The CLI prints ``str(error)`` as one paragraph and exits with ``error.exit_code``; library
callers catch the class. Codes and exit codes are frozen once released (docs/exit-codes.md).
A subclass defined anywhere in pgshift registers itself (``registered()``), so the docs and the
uniqueness test see every class; each must set its own ``code`` and ``exit_code``.
"""

from __future__ import annotations

_REGISTERED: list[type[PgshiftError]] = []


class PgshiftError(Exception):
    """Base class. ``code`` is a stable identifier, ``exit_code`` the process exit status."""

    code = "error"
    exit_code = 1

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTERED.append(cls)

    def __init__(self, message: str, *, hint: str | None = None, sqlstate: str | None = None,
                 detail: str | None = None, version: str | None = None, file: str | None = None,
                 line: int | None = None, statement: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # What a program needs without parsing the message (set where they are known): the server's
        # SQLSTATE and DETAIL, and the migration version, file, line and statement at fault.
        self.sqlstate = sqlstate
        self.detail = detail
        self.version = version
        self.file = file
        self.line = line
        self.statement = statement

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} Hint: {self.hint}"
        return self.message


class ConfigError(PgshiftError):
    """A configuration file, environment variable or flag is wrong; names the key."""

    code = "config"
    exit_code = 3


class ConnectionFailed(PgshiftError):
    """The server could not be reached (refused, unknown host, timeout, missing database), or ended the session
    mid-command (a restart during `migrate` or `backup`)."""

    code = "connection"
    exit_code = 4


class DatabaseClosed(PgshiftError):
    """The database refuses new sessions (ALLOW_CONNECTIONS false), e.g. after a restore killed during its swap."""

    code = "database-closed"
    exit_code = 26


class AuthenticationFailed(PgshiftError):
    """The server rejected the credentials."""

    code = "authentication"
    exit_code = 5


class MigrationSourceError(PgshiftError):
    """The migrations on disk are unusable (missing folder or file, empty file, duplicate version, bad directive)."""

    code = "source"
    exit_code = 6


class SqlParseError(MigrationSourceError):
    """A migration's SQL does not parse; carries file, line and column."""

    code = "sql-parse"
    exit_code = 7
    file: str  # always known here
    line: int

    def __init__(
        self, message: str, *, file: str, line: int, column: int, hint: str | None = None,
        text: str | None = None, base_line: int = 1,
    ) -> None:
        super().__init__(f"{file}:{line}:{column}: {message}", hint=hint, file=file, line=line)
        self.reason = message  # the parser's words, without the position
        # The SQL that did not parse and the file line it starts on, so lint can still check
        # the statements around the broken one.
        self.text = text
        self.base_line = base_line
        self.file = file
        self.line = line
        self.column = column


class MigrationFailed(PgshiftError):
    """A statement failed on the server; the migration's transaction was rolled back."""

    code = "migration-failed"
    exit_code = 8


class LockHeld(PgshiftError):
    """Another session held a lock pgshift needs past the wait limit (the deploy lock, or a table a backup reads)."""

    code = "lock-held"
    exit_code = 9


class ValidationFailed(PgshiftError):
    """Applied migrations and files disagree (edited, deleted, out of order)."""

    code = "validation"
    exit_code = 10


class Irreversible(PgshiftError):
    """A rollback needs a down part that does not exist."""

    code = "irreversible"
    exit_code = 11


class LockTimeoutExhausted(MigrationFailed):
    """Every retry of a statement hit lock_timeout (SQLSTATE 55P03) or was chosen to end a deadlock (40P01)."""

    code = "lock-timeout"
    exit_code = 12


class SerializationExhausted(LockTimeoutExhausted):
    """Every retry of a statement failed to serialize (SQLSTATE 40001): the session runs at REPEATABLE READ or
    SERIALIZABLE (a database or role default) beside transactions changing the same rows."""

    code = "serialization"
    exit_code = 50


class BackupFailed(PgshiftError):
    """A backup could not be taken or did not verify."""

    code = "backup"
    exit_code = 13


class RestoreFailed(PgshiftError):
    """A restore stopped; the live database was left as it was unless stated otherwise."""

    code = "restore"
    exit_code = 14


class DiskFull(PgshiftError):
    """The disk filled up; nothing was committed by the failing step."""

    code = "disk-full"
    exit_code = 15


class EmbeddedServerError(PgshiftError):
    """The embedded PostgreSQL could not be found, initialised, started or stopped."""

    code = "embedded"
    exit_code = 16


class Interrupted(PgshiftError):
    """The user pressed Ctrl-C; the current transaction was rolled back."""

    code = "interrupted"
    exit_code = 130


# Exit codes that are not errors; each error class documents its own (its docstring's first line).
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "the command ran and found something (pending migrations with --exit-code, "
    "lint findings, failed checks)",
}


class UsageError(PgshiftError):
    """Usage error: an unknown option or missing argument, or one naming nothing (a `lint` path that is not there)."""

    code = "usage"
    exit_code = 2


class AdoptError(PgshiftError):
    """Another tool's migration history could not be read (missing or unfamiliar table)."""

    code = "adopt"
    exit_code = 17



class RehearsalFailed(PgshiftError):
    """A rehearsal on a clone could not run, or its verdict was fail."""

    code = "rehearsal"
    exit_code = 18



class MigrationRefused(PgshiftError):
    """migrate refused before touching anything: lint errors, or a destructive change without a verified backup."""

    code = "refused"
    exit_code = 19



class FileProblem(PgshiftError):
    """A local file or folder could not be created, read or written (permissions, a path that is not a folder)."""

    code = "file"
    exit_code = 20



class HistoryTooNew(PgshiftError):
    """The history ledger was written by a newer pgshift than this one."""

    code = "history-too-new"
    exit_code = 23


class ServerRefused(PgshiftError):
    """The server refused one of pgshift's own statements (ledger, deploy lock, catalog reads): privileges, standby."""

    code = "server-refused"
    exit_code = 24


def registered() -> list[type[PgshiftError]]:
    """Every error class in pgshift, after importing each module so that all have registered."""
    import importlib
    import pkgutil

    import pgshift

    for module in pkgutil.walk_packages(pgshift.__path__, "pgshift."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    return list(_REGISTERED)


def server_message(exc: BaseException) -> str:
    """A PostgreSQL error's message with the server's DETAIL and HINT, which ``str(exc)`` and
    ``diag.message_primary`` alone leave out (they often name the row, lock or object at fault)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) or " ".join(str(exc).split())
    extra = [f"{label}: {text}" for label, text in (("DETAIL", getattr(diag, "message_detail", None)),
                                                     ("HINT", getattr(diag, "message_hint", None))) if text]
    return f"{primary} ({'; '.join(extra)})" if extra else primary


def from_os_error(exc: OSError, doing: str = "") -> PgshiftError:
    """The one-paragraph error for a failed file operation: DiskFull for a full disk or quota,
    FileProblem naming the path otherwise."""
    import errno

    paths = " and ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None) or "a local file"
    reason = exc.strerror or str(exc)
    what = f" while {doing}" if doing else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"{paths}: {reason}{what}. The disk holding it is full (or over quota).",
                        hint="free some space there or point the setting at another disk, then run it again.")
    return FileProblem(f"{paths}: {reason}{what}.",
                       hint="check that the path is a folder you can write to (its setting, or the option "
                            "that named it).")


def server_error_text(exc: BaseException) -> str:
    """A server error as one paragraph that loses nothing: "message (SQLSTATE x). Detail: ... Hint: ...".
    DETAIL names the duplicated key or missing value; HINT often says what to do."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) or str(exc).strip() or type(exc).__name__
    text = primary.rstrip(".")
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        text += f" (SQLSTATE {sqlstate})"
    text += "."
    for label, part in (("Detail", getattr(diag, "message_detail", None)),
                        ("Hint", getattr(diag, "message_hint", None))):
        if part:
            text += f" {label}: {part.strip()}" + ("" if part.strip().endswith(".") else ".")
    return text
