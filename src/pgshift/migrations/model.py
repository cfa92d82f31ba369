"""The in-memory form of a migration, whatever folder format it came from."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, TypeVar

from pgshift.errors import MigrationSourceError, SqlParseError
from pgshift.units import Duration

if TYPE_CHECKING:
    from pgshift.ops.model import OpsFile

Kind = Literal["versioned", "repeatable"]
SqlPhase = Literal["up", "down"]
OpsPhase = Literal["expand", "contract", "abort"]
Phase = Literal["up", "down", "expand", "contract", "abort"]
StepT = TypeVar("StepT")


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


class StepPlanner(Protocol[StepT]):
    """Turns a migration's phase into the step engine's steps. Implemented above this layer
    (pgshift.ops.plan.StepPlanner: the runner's ``sql_steps``, the operations planner's ``plan_phases``
    with the captured catalog facts), as the operations plan through pgshift.ops.operations._base.Plan."""

    def sql_steps(self, migration: SqlMigration, statements: Sequence[Statement]) -> list[StepT]: ...

    def ops_steps(self, migration: OpsMigration, phase: OpsPhase) -> list[StepT]: ...


class DataLossJudge(Protocol):
    """What says whether a migration's phase drops or truncates data: lint's destructive findings for a SQL
    migration (the gate's report), the planned contract steps for an operations migration."""

    def sql_drops(self, migration: SqlMigration) -> bool: ...

    def contract_drops(self, migration: OpsMigration) -> list[str]: ...


@dataclass
class Migration:
    """A versioned (or repeatable) migration: a :class:`SqlMigration` or an :class:`OpsMigration`
    (``isinstance`` tells them apart). This base holds what both have; it is not made itself.

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
    # A large part is a StreamedStatements (pgshift.migrations.splitter): read from its file when used.
    up: Sequence[Statement]
    down: Sequence[Statement] | None
    checksum: str
    source_format: str
    kind: Kind = "versioned"
    transactional: bool = True
    # Its own directives' timeouts, parsed once at load (None: the settings' ones).
    lock_timeout: Duration | None = None
    statement_timeout: Duration | None = None
    sort_key: tuple[object, ...] = field(default=())
    settings: tuple[SessionSetting, ...] = ()
    error: MigrationSourceError | None = None
    down_error: SqlParseError | None = None

    # The phase `pgshift migrate` runs, and the phases that undo it.
    forward: ClassVar[Phase]
    phases: ClassVar[tuple[Phase, ...]]

    def __post_init__(self) -> None:
        if type(self) is Migration:
            raise TypeError("Migration is the base of SqlMigration and OpsMigration; make one of those.")

    @property
    def label(self) -> str:
        return f"{self.version} {self.name}".strip()

    @property
    def reversible(self) -> bool:
        return self.down is not None

    def steps(self, phase: Phase, planner: StepPlanner[StepT]) -> list[StepT]:
        """The steps the engine runs for ``phase`` (one of ``phases``)."""
        raise NotImplementedError

    def is_destructive(self, phase: Phase, judge: DataLossJudge) -> bool:
        """Whether running ``phase`` drops or truncates data (what backup.policy asks about)."""
        raise NotImplementedError

    def undo_hint(self, *, contracted: bool = False) -> str | None:
        """What undoes this migration once applied (``contracted``: an operations migration's contract ran),
        as a hint's words; None when nothing pgshift runs can."""
        raise NotImplementedError


@dataclass
class SqlMigration(Migration):
    """A migration of SQL statements: its up part, and the down part `pgshift rollback` runs."""

    forward: ClassVar[Phase] = "up"
    phases: ClassVar[tuple[Phase, ...]] = ("up", "down")

    def part(self, phase: Phase) -> Sequence[Statement]:
        if phase == "up":
            return self.up
        if phase == "down" and self.down is not None:
            return self.down
        raise ValueError(f"{self.label} has no {phase} part.")

    def steps(self, phase: Phase, planner: StepPlanner[StepT]) -> list[StepT]:
        return planner.sql_steps(self, self.part(phase))

    def is_destructive(self, phase: Phase, judge: DataLossJudge) -> bool:
        # A rollback is a recovery path: never judged, never held back by backup.policy.
        return phase == "up" and judge.sql_drops(self)

    def undo_hint(self, *, contracted: bool = False) -> str | None:
        if self.down is not None:
            return "`pgshift rollback` runs its down part"
        return "restore from a backup with `pgshift restore`"


@dataclass
class OpsMigration(Migration):
    """A zero-downtime operations migration (``.ops.yaml`` / ``.ops.json``, pgshift.ops): no SQL parts;
    `pgshift migrate` runs its expand, `pgshift contract` finishes it and `pgshift abort` undoes the expand."""

    ops: OpsFile = field(kw_only=True)
    forward: ClassVar[Phase] = "expand"
    phases: ClassVar[tuple[Phase, ...]] = ("expand", "contract", "abort")

    def steps(self, phase: Phase, planner: StepPlanner[StepT]) -> list[StepT]:
        if phase not in ("expand", "contract", "abort"):
            raise ValueError(f"{self.label} is an operations migration: it has no {phase} part.")
        return planner.ops_steps(self, phase)

    def is_destructive(self, phase: Phase, judge: DataLossJudge) -> bool:
        # Expand only adds; abort removes only what expand added, and is a recovery path.
        return phase == "contract" and bool(judge.contract_drops(self))

    def undo_hint(self, *, contracted: bool = False) -> str | None:
        return None if contracted else f"`pgshift abort --version {self.version}`"


def checksum_of(*texts: str | bytes) -> str:
    """sha256 over the migration's source texts, so an edit of any part is detected."""
    import hashlib  # on first use: a plain lint hashes nothing and does not load OpenSSL

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
