"""pgshift's own format: ``<version>_<name>.sql`` with ``-- pgshift:up`` / ``-- pgshift:down``
markers and per-migration directives::

    -- pgshift:no-transaction
    -- pgshift:lock-timeout 5s
    -- pgshift:statement-timeout 10min
    -- pgshift:set maintenance_work_mem=1GB
    -- pgshift:up
    CREATE INDEX CONCURRENTLY ...;
    -- pgshift:down
    DROP INDEX CONCURRENTLY ...;

Without an up marker the whole file (up to a down marker) is the up part. A file without a
down marker is irreversible; an empty down part (marker, no statements) is an explicit no-op.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

from pgshift.errors import ConfigError, MigrationSourceError
from pgshift.migrations.files import in_order, named_sql_files, per_file, read_texts
from pgshift.migrations.model import (
    Migration,
    OpsMigration,
    SessionSetting,
    SqlMigration,
    checksum_of,
    session_setting,
    version_sort_key,
)
from pgshift.migrations.splitter import Split, read_source, split_down, split_sql
from pgshift.units import Duration

FILE_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>[A-Za-z0-9_\-]+)\.sql$")
# Zero-downtime operations (expand/contract, see docs/ops.md): <version>_<name>.ops.yaml or .ops.json.
OPS_FILE_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>[A-Za-z0-9_\-]+)\.ops\.(?:ya?ml|json)$")
DIRECTIVE = re.compile(r"^\s*--\s*pgshift:(?P<name>[a-z][a-z0-9-]*)\b(?P<arg>.*)$")
# Directives read by other parts of pgshift (lint suppressions) are accepted here unchanged.
PASS_THROUGH = {"ignore", "ignore-file"}

TEMPLATE = """\
-- {name}
-- Directives (uncomment as needed):
--   -- pgshift:no-transaction      run each statement on its own, outside a transaction
--   -- pgshift:lock-timeout 5s     override lock_timeout for this migration
--   -- pgshift:set work_mem=256MB  a server setting for this migration only (SET LOCAL)
-- pgshift:up


-- pgshift:down

"""


def claims(file: Path) -> bool:
    """Whether ``file``'s name is one of this format's migration files (no folder is read)."""
    return bool(FILE_NAME.match(file.name) or OPS_FILE_NAME.match(file.name))


def detect(path: Path) -> bool:
    return any(FILE_NAME.match(p.name) or OPS_FILE_NAME.match(p.name) for p in path.iterdir())


def parse_file(path: Path, version: str, name: str, *, split: Split = split_sql) -> Migration:
    source = read_source(path, "pgshift:", split)  # a large file is read in pieces, its text never held
    if source.blank:
        raise MigrationSourceError(f"The migration file {path} is empty.")
    checksum = source.checksum()
    transactional = True
    lock_timeout: Duration | None = None
    statement_timeout: Duration | None = None
    settings: dict[str, SessionSetting] = {}
    # Line numbers of the markers, and offsets in text where the up part starts and the down marker line.
    up_start, up_offset = 0, 0
    down_start: int | None = None
    down_line_start = down_offset = source.length
    for number, line_start, line_end, line in source.lines:
        match = DIRECTIVE.match(line)
        if not match:
            continue
        directive, arg = match.group("name"), match.group("arg").strip()
        where = f"{path}:{number}"
        if directive == "up":
            up_start, up_offset = number, line_end
        elif directive == "down":
            if down_start is not None:
                raise MigrationSourceError(f"{where}: a second '-- pgshift:down' marker.")
            down_start, down_line_start, down_offset = number, line_start, line_end
        elif directive == "no-transaction":
            transactional = False
        elif directive in ("lock-timeout", "statement-timeout"):
            try:
                timeout = Duration.parse(arg, key=f"{where}: {directive}")
            except ConfigError as exc:
                raise MigrationSourceError(str(exc)) from exc
            if directive == "lock-timeout":
                lock_timeout = timeout
            else:
                statement_timeout = timeout
        elif directive == "set":
            name, equals, value = arg.partition("=")
            if not equals:
                raise MigrationSourceError(f"{where}: '-- pgshift:set' needs name=value, got {arg!r}.",
                                           hint="for example `-- pgshift:set maintenance_work_mem=1GB`.")
            setting = session_setting(name, value, where)
            if setting.name in settings:
                raise MigrationSourceError(f"{where}: {setting.name} is already set at "
                                           f"{settings[setting.name].where}.")
            settings[setting.name] = setting
        elif directive not in PASS_THROUGH:
            raise MigrationSourceError(
                f"{where}: unknown directive 'pgshift:{directive}'.",
                hint="known directives: up, down, no-transaction, lock-timeout, "
                "statement-timeout, set, ignore, ignore-file.",
            )
    if down_start is not None and down_start < up_start:
        raise MigrationSourceError(f"{path}:{down_start}: the down marker comes before the up marker.")
    # Sections are split in place (offsets into text), not copied out of it.
    up = source.part(up_start + 1, up_offset, down_line_start)
    if not up:
        raise MigrationSourceError(f"{path} has no statements in its up part.")
    down, down_error = None, None
    if down_start is not None:
        down_base = down_start + 1
        down, down_error = split_down(lambda: source.part(down_base, down_offset))
    return SqlMigration(
        version=version,
        name=name,
        path=path,
        up=up,
        down=down,
        down_error=down_error,
        checksum=checksum,
        source_format="native",
        transactional=transactional,
        lock_timeout=lock_timeout,
        statement_timeout=statement_timeout,
        sort_key=version_sort_key(version),
        settings=tuple(settings.values()),
    )


def load(path: Path, *, split: Split = split_sql) -> list[Migration]:
    files = named_sql_files(
        path, FILE_NAME, tool="pgshift", example="<version>_<name>.sql, e.g. 20240101120000_add_users.sql",
        hint="rename it, or set format in pgshift.toml if the folder belongs to another tool.",
    )
    migrations = [
        per_file(partial(parse_file, file, version, name, split=split), version=version, name=name, path=file,
                 source_format="native", texts=partial(read_texts, file))
        for file, match in files
        for version, name in [(match.group("version"), match.group("name"))]
    ]
    for file in sorted(path.iterdir()):
        if match := OPS_FILE_NAME.match(file.name):
            migrations.append(parse_ops_file(file, match.group("version"), match.group("name")))
    return in_order(migrations)


def parse_ops_file(path: Path, version: str, name: str) -> OpsMigration:
    """An operations file: no SQL up part; `pgshift migrate` runs its expand phase."""
    from pgshift.ops.model import load_file

    ops, text = load_file(path)
    settings = tuple(session_setting(key, value, f"{path}:{_key_line(text, key)}: settings.{key}")
                     for key, value in ops.settings.items())
    return OpsMigration(version=version, name=name, path=path, up=[], down=None, checksum=checksum_of(text),
                        source_format="native", lock_timeout=ops.lock_timeout, sort_key=version_sort_key(version),
                        ops=ops, settings=settings)


def _key_line(text: str, key: str) -> int:
    """The line of ``key:`` (or ``"key":``) in an ops file, for messages; 1 when not found."""
    found = re.search(rf"^[ \t]*[\"']?{re.escape(key)}[\"']?[ \t]*:", text, re.M)
    return text.count("\n", 0, found.start()) + 1 if found else 1
