"""Settings: ``pgshift.toml`` (or ``[tool.pgshift]`` in ``pyproject.toml``), then the
environment (``DATABASE_URL``, ``PGSHIFT_*``), then command-line flags.

Unknown keys and bad values are errors that name the key and where it was set.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from pgshift.discovery import Discovery, discover
from pgshift.errors import ConfigError
from pgshift.units import Duration, Size
from pgshift.units import duration_ms as duration_ms

# The choices of a setting are its Literal type: load_settings checks a value against it, once.
Format = Literal["auto", "native", "prisma", "flyway", "dbmate", "goose", "golang-migrate"]
FORMATS: tuple[Format, ...] = get_args(Format)
FailLevel = Literal["error", "warning", "note"]
BackupPolicy = Literal["always", "destructive-only", "never"]
BackupFormat = Literal["custom", "directory"]
LargeTables = Literal["archive", "count"]
MirrorTool = Literal["prisma", "flyway", "dbmate", "goose", "golang-migrate"]
ContractWhen = Literal["auto", "later"]
OnFailure = Literal["abort", "restore"]
Destructive = Literal["defer", "refuse"]
BackupProvider = Literal["pg_dump", "pgbackrest"]


class _Typed:
    """Typed settings stay typed when built directly: a library caller's ``Settings(lock_timeout="2s")``
    fails here, not in the middle of a migration (load_settings parses text itself, naming the file)."""

    def __post_init__(self) -> None:
        for name, hint in _typed_fields(type(self)):
            value = getattr(self, name)
            where = f"{type(self).__name__}.{name}"
            if hint in (Duration, Size) and not isinstance(value, hint):
                raise TypeError(f"{where} must be a pgshift.units.{hint.__name__} "
                                f"({hint.__name__}.parse({value!r})), not {value!r}.")
            choices = choices_of(hint)
            if choices and value not in choices and not (value is None and type(None) in get_args(hint)):
                raise ValueError(f"{where} must be one of {', '.join(choices)}, not {value!r}.")


_TYPED_FIELDS: dict[type, tuple[tuple[str, Any], ...]] = {}


def _typed_fields(cls: type) -> tuple[tuple[str, Any], ...]:
    """The fields of a settings section that hold a Duration, a Size or a Literal choice."""
    if cls not in _TYPED_FIELDS:
        hints = get_type_hints(cls)
        _TYPED_FIELDS[cls] = tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls)
                                   if hints[f.name] in (Duration, Size) or choices_of(hints[f.name]))
    return _TYPED_FIELDS[cls]


@dataclass(frozen=True)
class LintSettings(_Typed):
    enable: list[str] = field(default_factory=list)
    disable: list[str] = field(default_factory=list)
    severity: dict[str, str] = field(default_factory=dict)
    pg_version: int | None = None
    assume_in_transaction: bool = False
    fail_level: FailLevel = "error"
    # True when migrations are only ever applied by `pgshift migrate`, which sets lock_timeout
    # and statement_timeout itself: the missing-timeout rules then stay quiet.
    runner_timeouts: bool = False
    # Tables at or above these sizes (from --database) turn size-dependent findings into errors;
    # tables below small_table_rows become notes.
    large_table_rows: int = 1_000_000
    small_table_rows: int = 10_000
    schema_file: str | None = None  # a `pg_dump --schema-only` file to seed the schema model


@dataclass(frozen=True)
class BackupSettings(_Typed):
    directory: str = "backups"
    policy: BackupPolicy = "destructive-only"  # always | destructive-only | never
    format: BackupFormat = "custom"  # custom | directory
    jobs: int = 1
    keep: int = 0  # 0 keeps everything
    max_age: Duration = Duration.parse("24h")  # how recent a verified backup must be for `check`
    pg_bindir: str | None = None  # where pg_dump/pg_restore live (default: found, >= server major)
    hash_max_mb: int = 64  # larger tables get no content hash at backup time (compared with the archive instead)
    # Larger tables: "archive" reads them once on the server (pg_dump's COPY) and takes their row
    # count from the archive at verification; "count" also counts them in pg_dump's snapshot.
    large_tables: LargeTables = "archive"
    # Who satisfies backup.policy: "pg_dump" (pgshift takes and verifies a dump) or a physical backup
    # system the team runs ("pgbackrest"), of which pgshift requires a completed backup newer than max_age.
    provider: BackupProvider = "pg_dump"
    pgbackrest_stanza: str | None = None
    pgbackrest_config: str | None = None  # pgbackrest's --config (default: its own, /etc/pgbackrest/...)
    pgbackrest_repo: int | None = None  # --repo: one repository (default: every configured one)
    pgbackrest_command: str = "pgbackrest"  # the program, found on PATH unless a path
    # Also restore that backup into a scratch folder, start a server on it and query it, before relying on it.
    restore_check: bool = False
    restore_check_directory: str | None = None  # where the scratch folder goes (default: the temp dir)


@dataclass(frozen=True)
class AppSettings(_Typed):
    stop_command: list[str] = field(default_factory=list)
    start_command: list[str] = field(default_factory=list)
    health_url: str | None = None
    health_timeout: Duration = Duration.parse("60s")
    version_command: list[str] = field(default_factory=list)
    version_file: str | None = None


@dataclass(frozen=True)
class WatchSettings(_Typed):
    """`pgshift watch` (and the watch of migrate, backfill and deploy): how often to sample the server,
    and the thresholds that end a watch with a failure. 0 (or "0") turns a threshold off."""

    interval: Duration = Duration.parse("1s")
    max_blocked_ms: int = 0  # longest time a session has waited for a lock
    max_blocked_sessions: int = 0  # sessions waiting for a lock at once
    max_rollback_rate: int = 0  # rolled-back transactions per second
    max_transaction: Duration = Duration.parse("0")  # longest open transaction
    max_lag: Duration = Duration.parse("0")  # replay lag of any standby, as time
    max_lag_bytes: Size = Size.parse("0")  # ... and as WAL not yet replayed ("64MB")
    max_health_failures: int = 3  # consecutive failed probes of app.health_url
    # name -> shell command printing one number (e.g. an error count from the application's log)
    metric_commands: dict[str, str] = field(default_factory=dict)
    metric_limits: dict[str, float] = field(default_factory=dict)  # name -> the highest allowed value

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, limit in self.metric_limits.items():
            if isinstance(limit, bool) or not isinstance(limit, (int, float)):
                raise TypeError(f"WatchSettings.metric_limits[{name!r}] must be a number, not {limit!r}.")


@dataclass(frozen=True)
class DeploySettings(_Typed):
    """`pgshift deploy`: the hooks that roll the application out (and back), how long to wait for it,
    how long to watch, and what to do on a failure (docs/deploy.md)."""

    app_command: str | None = None  # shell command rolling out the new application version (idempotent)
    rollback_app_command: str | None = None  # ... and rolling it back
    app_timeout: Duration = Duration.parse("10min")  # a hook still running then is killed
    health_command: str | None = None  # healthy when it exits 0 (with or instead of app.health_url)
    health_timeout: Duration = Duration.parse("2min")  # how long the new version may take to become healthy
    watch: Duration = Duration.parse("10min")  # the watch window after the app is healthy
    contract: ContractWhen = "later"  # auto: contract right after the watch window; later: after the soak
    soak: Duration = Duration.parse("7d")  # with contract = "later": when the contract becomes due
    on_failure: OnFailure = "abort"  # abort: rollback_app_command, then undo what this deploy applied; restore: below
    # on_failure = "restore" swaps in this deploy's backup: it must be set to RESTORE_CONFIRMATION, word for word.
    restore_confirm: str | None = None
    destructive: Destructive = "defer"  # destructive SQL migrations: defer (after the watch window) or refuse


RESTORE_CONFIRMATION = "lose every write since the backup and end every session on the database"


def check_restore_confirmation(settings: Settings) -> None:
    """deploy.on_failure = "restore" replaces the database with this deploy's backup: every write made after it
    is lost, and every session on the database is ended for the swap. It needs deploy.restore_confirm to say so."""
    if settings.deploy.on_failure != "restore" or settings.deploy.restore_confirm == RESTORE_CONFIRMATION:
        return
    where = settings.source or "the settings"
    got = f"it is {settings.deploy.restore_confirm!r}" if settings.deploy.restore_confirm else "it is not set"
    raise ConfigError(
        f"deploy.on_failure = \"restore\" in {where} needs deploy.restore_confirm = \"{RESTORE_CONFIRMATION}\", "
        f"word for word ({got}). On a failed deploy it restores the backup the deploy took beside the database and "
        "swaps it in: every write since that backup is lost (the previous database is kept, renamed) and every "
        "session on the database is ended to rename it.",
        hint=f"add deploy.restore_confirm = \"{RESTORE_CONFIRMATION}\" under [deploy] if that is acceptable, or "
        "set deploy.on_failure = \"abort\" (undo what the deploy applied, keeping every write).")


@dataclass(frozen=True)
class BackfillSettings(_Typed):
    """The expand backfill of `.ops` migrations (and the defaults of `pgshift backfill`'s flags):
    pause while a standby is this far behind. "0" turns a threshold off."""

    max_lag: Duration = Duration.parse("10s")  # replay lag of any standby, as time
    max_lag_bytes: Size = Size.parse("0")  # ... as WAL not yet replayed ("64MB"): immediate even while replay is paused


@dataclass(frozen=True)
class MigrateSettings(_Typed):
    # After `migrate` applied something, wait up to this long until every standby has replayed it
    # (its WAL position), so an application reading from a standby never sees the old schema. "0": off.
    wait_for_standbys: Duration = Duration.parse("0")


@dataclass(frozen=True)
class CheckSettings(_Typed):
    # `pgshift check` reads the rows a pending constraint will check (its existing-rows item) for at most this
    # long in all, each lookup at most 30s; "0": it reads none (the item is skipped).
    rows_budget: Duration = Duration.parse("120s")


@dataclass(frozen=True)
class LedgerSettings(_Typed):
    # Also record every migration pgshift applies or rolls back in this tool's own history table
    # (pgshift.db.mirror), so the tool can keep running beside pgshift.
    mirror: MirrorTool | None = None
    mirror_schema: str | None = None  # default: the first schema of the search_path, as the tools do


@dataclass(frozen=True)
class TargetsSettings(_Typed):
    """`--targets FILE` (pgshift.fleet): how a command rolls out over many databases."""

    # The first N targets of the file, or these target names, run first; if one fails, no other starts.
    canary: int | list[str] = 0
    parallel: int = 1  # targets at a time after the canary group
    max_failures: int = 0  # failed targets tolerated before no new target starts
    # SQL run on catalog_url returning (name, url) rows; the names a targets file lists are looked up in it.
    query: str | None = None
    catalog_url: str | None = None  # default: database_url


@dataclass(frozen=True)
class Settings(_Typed):
    database_url: str | None = None
    # A direct connection (not through a transaction-mode pooler such as PgBouncer) for the deploy session:
    # the deploy lock, the ledger and every DDL step. Default: database_url.
    migrate_url: str | None = None
    migrations_dir: str = "migrations"
    format: Format = "auto"
    history_schema: str = "pgshift"
    lock_timeout: Duration = Duration.parse("2s")
    statement_timeout: Duration = Duration.parse("0")
    lock_retries: int = 5
    retry_initial_delay: Duration = Duration.parse("200ms")
    retry_max_delay: Duration = Duration.parse("10s")
    lock_wait: Duration = Duration.parse("60s")
    application_name: str = "pgshift"
    allow_out_of_order: bool = False
    # Stop statements that would rewrite a table larger than this ("100MB"); "0" = off (pgshift.ops.guard).
    rewrite_guard: Size = Size.parse("0")
    # ANALYZE the tables a migration left with stale planner statistics (a column type change, an
    # expression index, a backfill or bulk load), once it has committed, under lock_timeout.
    analyze_after: bool = True
    lint: LintSettings = field(default_factory=LintSettings)
    backup: BackupSettings = field(default_factory=BackupSettings)
    app: AppSettings = field(default_factory=AppSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
    deploy: DeploySettings = field(default_factory=DeploySettings)
    targets: TargetsSettings = field(default_factory=TargetsSettings)
    backfill: BackfillSettings = field(default_factory=BackfillSettings)
    migrate: MigrateSettings = field(default_factory=MigrateSettings)
    check: CheckSettings = field(default_factory=CheckSettings)
    # Connection URLs of the primary's standbys, for `check` to read their settings and queries.
    standby_urls: list[str] = field(default_factory=list)
    # Where the settings were read from, for messages and for resolving relative paths.
    source: str = field(default="defaults", compare=False)
    base_dir: Path = field(default_factory=Path.cwd, compare=False)
    # Set by load_settings when no migrations_dir is configured: the folder is looked for (pgshift.discovery)
    # the first time it is needed, and ``announce`` is told which one was chosen and why.
    discovery: Discovery | None = field(default=None, compare=False, repr=False)
    announce: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    @property
    def migrations_path(self) -> Path:
        if self.discovery is not None:
            self._settle_discovery(self.discovery)
        path = Path(self.migrations_dir)
        return path if path.is_absolute() else self.base_dir / path

    def _settle_discovery(self, found: Discovery) -> None:
        if len(found.candidates) > 1:
            listed = "; ".join(found.describe(c) for c in found.candidates)
            raise ConfigError(
                f"No migrations_dir is configured and {len(found.candidates)} folders in {found.root} look like "
                f"migrations: {listed}.",
                hint="choose one with --dir, migrations_dir in pgshift.toml, or PGSHIFT_MIGRATIONS_DIR.",
            )
        # The one change a frozen Settings makes to itself: the folder it was told to look for, once found.
        object.__setattr__(self, "discovery", None)
        chosen = found.chosen
        if chosen is None:
            return
        object.__setattr__(self, "migrations_dir", found.label(chosen) if chosen.path != found.root else ".")
        if self.announce and not found.announced:
            found.announced = True
            ignored = "".join(f"; ignored the empty folder {found.label(c)}" for c in found.ignored_empty)
            self.announce(f"using the migrations folder {found.describe(chosen)}{ignored}: no migrations_dir is "
                          "configured (set it, or pass --dir, to choose another)")

    def resolve(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else self.base_dir / path

    @property
    def deploy_url(self) -> str | None:
        """Where the deploy session connects: migrate_url when set, else database_url."""
        return self.migrate_url or self.database_url

    @property
    def deploy_url_setting(self) -> str:
        """The setting that names ``deploy_url``, for messages."""
        return "migrate_url" if self.migrate_url else "database_url"

    @property
    def lock_timeout_ms(self) -> int:
        return self.lock_timeout.ms

    @property
    def statement_timeout_ms(self) -> int:
        return self.statement_timeout.ms


_INTERNAL = {"source", "base_dir", "discovery", "announce"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_NON_EMPTY = {"migrations_dir", "migrate_url", "application_name", "backup.directory", "backup.pg_bindir",
              "backup.pgbackrest_stanza", "backup.pgbackrest_config", "backup.pgbackrest_command",
              "backup.restore_check_directory",
              "lint.schema_file", "app.version_file", "app.health_url", "ledger.mirror_schema", "deploy.app_command",
              "deploy.rollback_app_command", "deploy.health_command", "targets.query", "targets.catalog_url"}


def _coerce(key: str, expected: Any, value: Any, where: str, *, from_text: bool = False) -> Any:
    """``value`` as the field's type, or a ConfigError naming the key and where it was set.

    TOML and flags carry types, and must match (``allow_out_of_order = "yes"`` is refused);
    environment variables are text, parsed here once.
    """
    text = str(expected)
    if key == "targets.canary":
        return _canary(value, where, from_text=from_text)
    if expected is Duration or expected is Size:
        # A bare number is milliseconds (or bytes), as in PostgreSQL.
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            if expected is Duration:
                return Duration.parse(value, key=f"{key} in {where}")
            if isinstance(value, float):
                value = str(value)
            return Size.parse(value, key=f"{key} in {where}")
        example = "a quoted duration such as '2s'" if expected is Duration else "a quoted size such as '64MB'"
        raise ConfigError(f"{key} in {where} must be {example}, or a number, not {value!r}.")
    if key == "watch.metric_limits":
        return _metric_limits(value, where)
    if text.startswith("list"):
        if isinstance(value, str):
            return value.split()
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ConfigError(f"{key} in {where} must be a list of strings, not {value!r}.")
    if text.startswith("dict"):
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return {str(k): v for k, v in value.items()}
        raise ConfigError(f"{key} in {where} must be a table of quoted strings (for example "
                          f"{{ PS001 = \"warning\" }}), not {value!r}.")
    if expected is bool or text == "bool":
        if isinstance(value, bool):
            return value
        if from_text and isinstance(value, str) and value.strip().lower() in (*_TRUE, *_FALSE):
            return value.strip().lower() in _TRUE
        hint = " (an unquoted TOML boolean)" if not from_text else ""
        raise ConfigError(f"{key} in {where} must be true or false{hint}, not {value!r}.")
    if expected is int or text.startswith("int"):
        if value is None and "None" in text:
            return None
        if from_text and isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise ConfigError(f"{key} in {where} must be a whole number >= 0, not {value!r}.")
    if not isinstance(value, str):
        raise ConfigError(f"{key} in {where} must be a quoted string, not {value!r}.")
    if key in _NON_EMPTY and not value.strip():
        raise ConfigError(f"{key} in {where} must not be empty.")
    if (choices := choices_of(expected)) and value not in choices:
        raise ConfigError(f"{key} in {where} must be one of {', '.join(choices)}, not {value!r}.")
    return value


def _metric_limits(value: Any, where: str) -> dict[str, float]:
    """watch.metric_limits: each metric's highest allowed value, a number (quoted or not), parsed once."""
    if not isinstance(value, dict):
        raise ConfigError(f"watch.metric_limits in {where} must be a table of numbers (for example "
                          f"{{ errors = 100 }}), not {value!r}.")
    limits = {}
    for name, limit in value.items():
        try:
            if isinstance(limit, bool):
                raise ValueError
            limits[str(name)] = float(limit)
        except (TypeError, ValueError):
            raise ConfigError(f"watch.metric_limits.{name} in {where} must be a number, not {limit!r}.") from None
    return limits


def choices_of(hint: Any) -> tuple[str, ...]:
    """The values a ``Literal`` setting (or ``Literal | None``) allows; () for any other type."""
    if get_origin(hint) in (Union, UnionType):
        args = [arg for arg in get_args(hint) if arg is not type(None)]
        hint = args[0] if len(args) == 1 else None
    return get_args(hint) if get_origin(hint) is Literal else ()


def _canary(value: Any, where: str, *, from_text: bool) -> int | list[str]:
    """targets.canary: a count (``1``) or target names (``["acme", "globex"]``; in the environment
    digits or names separated by spaces)."""
    if from_text and isinstance(value, str):
        return int(value) if value.strip().isdigit() else value.split()
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return value
    raise ConfigError(f"targets.canary in {where} must be a whole number >= 0 (how many targets go first) or a "
                      f"non-empty list of target names, not {value!r}.")


def _apply(target: Any, values: dict[str, Any], where: str, prefix: str = "") -> Any:
    """A copy of the (frozen) settings section ``target`` with ``values`` parsed into it."""
    hints = get_type_hints(type(target))
    names = {f.name for f in dataclasses.fields(target)} - _INTERNAL
    changes: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = raw_key.replace("-", "_")
        dotted = f"{prefix}{key}"
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"Unknown setting '{dotted}' in {where}. Known settings: {known}.")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current) and not isinstance(current, (Duration, Size)):  # a section
            if not isinstance(value, dict):
                if where == "the environment":
                    first = dataclasses.fields(current)[0].name.upper()
                    raise ConfigError(f"PGSHIFT_{dotted.upper()} names the section [{dotted}], not a setting; set "
                                      f"its keys one by one, for example PGSHIFT_{dotted.upper()}__{first}.")
                raise ConfigError(f"'{dotted}' in {where} must be a table (a [{dotted}] section with its keys), "
                                  f"not {value!r}.")
            changes[key] = _apply(current, value, where, prefix=f"{dotted}.")
            continue
        from_text = where == "the environment"
        place = f"the environment variable PGSHIFT_{dotted.upper().replace('.', '__')}" if from_text else where
        coerced = _coerce(dotted, hints[key], value, place, from_text=from_text)
        _validate(dotted, coerced, place)
        changes[key] = coerced
    return dataclasses.replace(target, **changes) if changes else target


def _validate(key: str, value: Any, where: str) -> None:
    if key == "history_schema" and not _IDENTIFIER.match(str(value)):
        raise ConfigError(f"history_schema in {where} must be a plain identifier, not {value!r}.")
    if key == "migrate_url":
        _validate_url(key, value, where)
    if key == "standby_urls":
        for url in value:
            if not url.strip():
                raise ConfigError(f"standby_urls in {where} must not hold an empty URL.")
    if key == "watch.interval" and value.ms < 100:
        raise ConfigError(f"watch.interval in {where} must be at least 100ms, not {value.text!r}.")
    if key == "targets.parallel" and value < 1:
        raise ConfigError(f"targets.parallel in {where} must be at least 1 (targets migrated at a time), not {value}.")
    if key == "backup.pgbackrest_repo" and value is not None and not 1 <= value <= 256:
        raise ConfigError(f"backup.pgbackrest_repo in {where} must be a pgBackRest repository number from 1 to 256, "
                          f"not {value}.")
    if key == "lint.pg_version" and value is not None and not 10 <= int(value) <= 30:
        # Like --pg-version: lint can judge SQL for servers older than pgshift runs against.
        raise ConfigError(f"lint.pg_version in {where} must be a PostgreSQL major version from 10 to 30.")


def _validate_url(key: str, value: str, where: str) -> None:
    from psycopg import ProgrammingError, conninfo

    try:
        conninfo.conninfo_to_dict(value)
    except ProgrammingError:
        # Neither the value nor psycopg's message is shown: both may hold (pieces of) a password.
        raise ConfigError(f"{key} in {where} is not a valid connection string: write a postgresql:// URL or "
                          "libpq key=value pairs (https://www.postgresql.org/docs/current/libpq-connect.html)."
                          ) from None


def _validate_provider(settings: Settings, layers: tuple[dict[str, Any], ...], places: tuple[str, ...]) -> None:
    """A physical backup provider needs to know which backups are this cluster's."""
    if settings.backup.provider != "pgbackrest" or settings.backup.pgbackrest_stanza:
        return
    where = next((place for layer, place in reversed(list(zip(layers, places, strict=True)))
                  if isinstance(layer.get("backup"), dict) and "provider" in layer["backup"]), "")
    raise ConfigError(f'backup.provider = "pgbackrest" in {where} needs backup.pgbackrest_stanza: the pgBackRest '
                      "stanza of this database's cluster (as in `pgbackrest --stanza=NAME info`), whose newest "
                      "completed backup satisfies backup.policy.")


def find_config_file(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        for name in ("pgshift.toml", "pyproject.toml"):
            candidate = directory / name
            if candidate.is_file():
                if name == "pyproject.toml" and "[tool.pgshift" not in candidate.read_text(errors="replace"):
                    continue
                return candidate
        if (directory / ".git").exists():
            break
    return None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"The configuration file {path} does not exist.") from None
    except OSError as exc:
        raise ConfigError(f"The configuration file {path} cannot be read: {exc.strerror}.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}.") from exc
    if path.name == "pyproject.toml":
        tool = data.get("tool", {})
        return dict(tool.get("pgshift", {})) if isinstance(tool, dict) else {}
    return data


def _from_environment(environ: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if url := environ.get("DATABASE_URL"):
        values["database_url"] = url
    top = {f.name for f in dataclasses.fields(Settings)} - _INTERNAL
    for name, value in environ.items():
        if not name.startswith("PGSHIFT_") or name.startswith("PGSHIFT_TEST_"):
            continue
        key = name[len("PGSHIFT_"):].lower()
        if key in ("pg_bindir",):
            continue  # read by pgshift.embedded
        if "__" in key:
            section, sub = key.split("__", 1)
            values.setdefault(section, {})[sub] = value
        elif key in top:
            values[key] = value
        else:
            raise ConfigError(
                f"Unknown environment variable {name}. PGSHIFT_ variables name settings, "
                f"for example PGSHIFT_LOCK_TIMEOUT or PGSHIFT_BACKUP__POLICY."
            )
    return values


def load_settings(
    config_path: str | Path | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Build Settings from file, environment and ``overrides`` (flags), later winning."""
    cwd = cwd or Path.cwd()
    settings = Settings(base_dir=cwd)
    path = Path(config_path) if config_path else find_config_file(cwd)
    file_values: dict[str, Any] = {}
    if path is not None:
        path = path if path.is_absolute() else cwd / path
        file_values = _read_file(path)
        settings = dataclasses.replace(_apply(settings, file_values, str(path)), source=str(path),
                                       base_dir=path.parent)
    environ = dict(os.environ if environ is None else environ)
    env_values = _from_environment(environ)
    settings = _apply(settings, env_values, "the environment")
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    settings = _apply(settings, flags, "the command line")
    layers = (file_values, env_values, flags)
    _validate_provider(settings, layers, (str(path) if path is not None else "", "the environment", "the command line"))
    if not any(key.replace("-", "_") == "migrations_dir" for layer in layers for key in layer):
        settings = dataclasses.replace(settings, discovery=discover(settings.base_dir, environ))
    assert isinstance(settings, Settings)
    check_restore_confirmation(settings)
    return settings
