"""The in-memory form of a migration, whatever folder format it came from."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pgshift.errors import MigrationSourceError, SqlParseError

if TYPE_CHECKING:
    from pgshift.ops.model import OpsFile

Kind = Literal["versioned", "repeatable"]


@dataclass(frozen=True)
class Statement:
    """One SQL statement with where it came from (1-based line and column in ``file``)."""

    sql: str
    file: str
    line: int
    column: int
    index: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    @property
    def summary(self) -> str:
        first = " ".join(self.sql.split())
        return first if len(first) <= 100 else first[:97] + "..."


@dataclass(frozen=True)
class SessionSetting:
    """A server setting a migration runs under (``-- pgshift:set work_mem=256MB``, or ``settings:`` of an
    ops file): ``SET LOCAL`` in each of its transactions, ``SET`` + ``RESET`` around each autocommit statement.
    ``where`` is the file and line that asks for it, for error messages."""

    name: str
    value: str
    where: str


@dataclass
class Migration:
    """A versioned (or repeatable) migration with its up part and optional down part.

    ``transactional`` is False when the file asks to run outside a transaction; the runner
    additionally runs statements that PostgreSQL refuses inside a transaction on their own.

    ``down`` is None both when there is no down part and when it does not parse; ``down_error``
    tells the two apart. A file that cannot be read as a migration at all (its up part does not
    parse, a marker is missing, ...) loads with ``error`` set and no statements, so that one bad
    file is an error at that migration (migrate, rollback, lint) instead of for the whole folder.
    """

    version: str
    name: str
    path: Path
    up: list[Statement]
    down: list[Statement] | None
    checksum: str
    source_format: str
    kind: Kind = "versioned"
    transactional: bool = True
    lock_timeout: str | None = None
    statement_timeout: str | None = None
    sort_key: tuple[object, ...] = field(default=())
    settings: tuple[SessionSetting, ...] = ()
    # Zero-downtime operations (pgshift.ops) from a .ops.yaml/.ops.json file; None for SQL migrations.
    ops: OpsFile | None = None
    error: MigrationSourceError | None = None
    down_error: SqlParseError | None = None

    @property
    def label(self) -> str:
        return f"{self.version} {self.name}".strip()

    @property
    def reversible(self) -> bool:
        return self.down is not None


def checksum_of(*texts: str | bytes) -> str:
    """sha256 over the migration's source texts, so an edit of any part is detected."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode() if isinstance(text, str) else text)
        digest.update(b"\x00")
    return digest.hexdigest()


def version_sort_key(version: str) -> tuple[object, ...]:
    """Numeric versions (``20240101120000``, ``1.2.10``, ``1_2``) sort by their numbers."""
    parts = version.replace("_", ".").split(".")
    if all(p.isdigit() for p in parts):
        return (0, *(int(p) for p in parts))
    return (1, version)


_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)?$")
# Set by their own directives (and keys), with the runner's retries built around them.
_OWN_DIRECTIVE = {"lock_timeout": "lock-timeout", "statement_timeout": "statement-timeout"}


def session_setting(name: str, value: object, where: str) -> SessionSetting:
    """A setting's name and value as a file writes them, checked for form (the server checks the rest
    before anything runs: pgshift.runner.session_settings)."""
    name = name.strip()
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise MigrationSourceError(f"{where}: the value of setting {name!r} must be a string or a number, "
                                   f"not {value!r}.")
    text = str(value).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    if not _SETTING_NAME.match(name):
        raise MigrationSourceError(f"{where}: {name!r} is not a setting name.",
                                   hint="write it as `-- pgshift:set maintenance_work_mem=1GB`.")
    if name.lower() in _OWN_DIRECTIVE:
        raise MigrationSourceError(f"{where}: {name} has its own directive, which the runner's retries are "
                                   f"built around.", hint=f"write `-- pgshift:{_OWN_DIRECTIVE[name.lower()]} "
                                   f"{text or '5s'}` (in an .ops.yaml file: the key {name}).")
    if not text:
        raise MigrationSourceError(f"{where}: the setting {name} has no value.",
                                   hint=f"write it as `-- pgshift:set {name}=<value>`.")
    return SessionSetting(name.lower(), text, where)
