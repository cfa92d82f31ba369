"""Flyway's SQL format, scanned recursively like a Flyway location:

- ``V<version>__<description>.sql`` versioned; version parts separated by ``.`` or ``_``
  (``V1_2__x.sql`` is version ``1.2``, kept as Flyway displays and records it);
- ``U<version>__<description>.sql`` undo script, the down part of that version;
- ``R__<description>.sql`` repeatable: kind ``repeatable``, version ``R__<description as in the
  file name>``, sorted after every versioned migration, by description;
- ``<script>.conf`` next to a script, or a ``-- flyway:executeInTransaction=false`` comment line
  in it: ``executeInTransaction=false`` makes the migration non-transactional.

Descriptions turn underscores into spaces, as Flyway does. Versions equal as numbers
(``1`` and ``1.0``) are duplicates, as in Flyway. pgshift does not run Flyway callbacks
(``afterMigrate.sql`` ...), baseline migrations (``B...``) or placeholders, so callback and
baseline files are refused rather than silently skipped.
"""

from __future__ import annotations

import codecs
import re
import zlib
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from pgshift.errors import MigrationSourceError
from pgshift.migrations.files import per_file, read_text, require_dir, require_unique_versions
from pgshift.migrations.model import Migration, SqlMigration, version_sort_key
from pgshift.migrations.splitter import SourceFile, Split, read_source, split_down, split_sql

if TYPE_CHECKING:
    import hashlib  # only for annotations: hashlib (OpenSSL) loads where a hash is taken

FORMAT = "flyway"
VERSIONED = re.compile(r"^(?P<prefix>[VU])(?P<version>\d+(?:[._]\d+)*)__(?P<desc>.*)\.sql$")
REPEATABLE = re.compile(r"^R__(?P<desc>.+)\.sql$")
CALLBACK = re.compile(r"^(before|after)[A-Z][A-Za-z]*(__.*)?\.sql$")
# Matched against one line (its ending stripped): with re.M, a leading \s* took the blank lines above it.
INLINE_CONFIG = re.compile(r"^\s*--\s*flyway:(?P<key>[A-Za-z]+)\s*=\s*(?P<value>\S*)\s*$")
KNOWN_KEYS = {"executeInTransaction", "encoding"}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # what Java's BufferedReader.readLine splits on, no more


def flyway_checksum(text: str) -> int:
    """The checksum Flyway records for a script (``flyway_schema_history.checksum``).

    Flyway's ChecksumCalculator: a CRC32 fed each line as ``BufferedReader.readLine`` gives it
    (``\\r\\n``, ``\\r`` and ``\\n`` dropped, so line endings do not count), the first line without
    its UTF-8 BOM, each encoded as UTF-8; stored as Java's signed ``int``."""
    if text.startswith("\ufeff"):
        text = text[1:]
    crc = 0
    for line in _LINE_BREAK.split(text):
        crc = zlib.crc32(line.encode("utf-8"), crc)
    return crc - (1 << 32) if crc >= 1 << 31 else crc


_READ_BYTES = 1 << 20


def flyway_file_checksum(path: Path, errors: str = "strict") -> int:
    """:func:`flyway_checksum` of the file's text (decoded as UTF-8 with ``errors``), read a megabyte
    at a time. The CRC of the lines one after the other is the CRC of the text without its line
    breaks, so every '\\r' and '\\n' is dropped and the rest fed on (OSError, UnicodeDecodeError)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors)
    crc, first = 0, True
    with open(path, "rb") as file:
        while True:
            data = file.read(_READ_BYTES)
            text = decoder.decode(data, final=not data)
            if first and text:
                text, first = text.removeprefix("\ufeff"), False
            crc = zlib.crc32(text.replace("\r", "").replace("\n", "").encode("utf-8"), crc)
            if not data:
                return crc - (1 << 32) if crc >= 1 << 31 else crc


def claims(file: Path) -> bool:
    """Whether ``file``'s name is one of this format's migration files (no folder is read)."""
    return bool(VERSIONED.match(file.name) or REPEATABLE.match(file.name))


def detect(path: Path) -> bool:
    return any(VERSIONED.match(p.name) or REPEATABLE.match(p.name) for p in path.rglob("*.sql"))


def _numeric(version: str) -> tuple[int, ...]:
    """Flyway's version identity: numbers with trailing zero parts dropped (1.0 == 1)."""
    parts = [int(p) for p in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _settings(script: Path, source: SourceFile) -> tuple[dict[str, str], str]:
    """Script configuration from ``<script>.conf`` and inline ``-- flyway:key=value`` lines,
    with the .conf text (for the checksum)."""
    found: dict[str, tuple[str, str]] = {}
    conf = script.with_name(script.name + ".conf")
    conf_text = read_text(conf) if conf.is_file() else ""
    for number, line in enumerate(conf_text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            if not sep:
                raise MigrationSourceError(f"{conf}:{number}: expected key=value, got {line.strip()!r}.")
            found[key.strip()] = (value.strip(), f"{conf}:{number}")
    for number, _, _, line in source.lines:  # the lines containing "flyway:", found as the file is read
        if match := INLINE_CONFIG.match(line.rstrip("\r\n")):
            found[match.group("key")] = (match.group("value"), f"{script}:{number}")
    for key, (value, where) in found.items():
        if key not in KNOWN_KEYS:
            raise MigrationSourceError(
                f"{where}: unsupported Flyway script setting {key!r}.",
                hint="pgshift understands executeInTransaction and encoding (UTF-8 only).",
            )
        if key == "executeInTransaction" and value.lower() not in ("true", "false"):
            raise MigrationSourceError(f"{where}: executeInTransaction must be true or false, not {value!r}.")
        if key == "encoding" and value.upper().replace("-", "").replace("_", "") != "UTF8":
            raise MigrationSourceError(f"{where}: encoding {value!r} is not supported; save it as UTF-8.")
    return {key: value for key, (value, _) in found.items()}, conf_text


def _script(path: Path, split: Split) -> tuple[SourceFile, str, bool]:
    """(the script, its .conf text, transactional): a large script is read in pieces, never held."""
    source = read_source(path, "flyway:", split)
    if source.blank:
        raise MigrationSourceError(f"The migration file {path} is empty.")
    settings, conf_text = _settings(path, source)
    transactional = settings.get("executeInTransaction", "true").lower() != "false"
    return source, conf_text, transactional


def _hash_conf(digest: hashlib._Hash, conf_text: str) -> None:
    if conf_text:  # checksum_of(script, conf, undo script, undo conf), without the texts of missing .conf files
        digest.update(conf_text.encode())
        digest.update(b"\x00")


def _migration(
    path: Path, version: str, desc: str, kind: str, undo: Path | None, split: Split
) -> Migration:
    source, conf_text, transactional = _script(path, split)
    up = source.part(1)
    if not up:
        raise MigrationSourceError(f"{path} has no SQL statements (only comments).")
    digest = source.digest.copy()
    digest.update(b"\x00")
    _hash_conf(digest, conf_text)
    down, down_error = None, None
    if undo is not None:
        undo_source, undo_conf, _ = _script(undo, split)
        undo_source.hash_into(digest)
        digest.update(b"\x00")
        _hash_conf(digest, undo_conf)
        down, down_error = split_down(lambda: undo_source.part(1))
    return SqlMigration(
        version=version,
        name=desc.replace("_", " "),
        path=path,
        up=up,
        down=down,
        down_error=down_error,
        checksum=digest.hexdigest(),
        source_format=FORMAT,
        kind="repeatable" if kind == "R" else "versioned",
        transactional=transactional,
        sort_key=version_sort_key(version),
    )


def _tolerant(path: Path, version: str, desc: str, kind: str, undo: Path | None, split: Split) -> Migration:
    """The migration, or one carrying why its files cannot be used (see ``per_file``)."""

    def texts() -> list[str]:
        found: list[str] = []
        for script in (path, undo):
            if script is not None:
                conf = script.with_name(script.name + ".conf")
                conf_text = read_text(conf) if conf.is_file() else ""
                found += [read_text(script), conf_text] if conf_text else [read_text(script)]
        return found

    return per_file(partial(_migration, path, version, desc, kind, undo, split), version=version,
                    name=desc.replace("_", " "), path=path, source_format=FORMAT, texts=texts,
                    kind="repeatable" if kind == "R" else "versioned")


def _refuse(file: Path) -> NoReturn:
    if CALLBACK.match(file.name):
        raise MigrationSourceError(
            f"{file} is a Flyway callback script; pgshift does not run callbacks.",
            hint="move its SQL into a migration (a repeatable R__ script for grants), or remove it.",
        )
    raise MigrationSourceError(
        f"{file} is not named like a Flyway migration (V<version>__<description>.sql, "
        "U<version>__<description>.sql or R__<description>.sql).",
        hint="rename it, or move files that are not migrations out of the folder.",
    )


def load(path: Path, *, split: Split = split_sql) -> list[Migration]:
    require_dir(path)
    versioned: dict[tuple[int, ...], tuple[Path, str, str]] = {}
    undos: dict[tuple[int, ...], Path] = {}
    repeatables: list[tuple[Path, str]] = []
    for file in sorted(path.rglob("*.sql")):
        match = VERSIONED.match(file.name)
        repeatable = REPEATABLE.match(file.name)
        if repeatable:
            repeatables.append((file, repeatable.group("desc")))
            continue
        if not match:
            _refuse(file)
        version = match.group("version").replace("_", ".")
        key = _numeric(version)
        if match.group("prefix") == "U":
            if key in undos:
                raise MigrationSourceError(f"Two undo scripts for version {version}: {undos[key]} and {file}.")
            undos[key] = file
        elif key in versioned:
            raise MigrationSourceError(
                f"Two migrations have version {version}: {versioned[key][0]} and {file}.",
                hint="give one of them a new version (rename the file).",
            )
        else:
            versioned[key] = (file, version, match.group("desc"))
    for key, undo in undos.items():
        if key not in versioned:
            raise MigrationSourceError(f"The undo script {undo} has no versioned migration to undo.")
    migrations = [
        _tolerant(file, version, desc, "V", undos.get(key), split) for key, (file, version, desc) in versioned.items()
    ]
    migrations += [_tolerant(file, f"R__{desc}", desc, "R", None, split) for file, desc in repeatables]
    require_unique_versions(migrations)
    _require_unique_repeatables(migrations)
    return sorted(migrations, key=lambda m: m.sort_key)


def _require_unique_repeatables(migrations: list[Migration]) -> None:
    seen: dict[str, Path] = {}
    for m in migrations:
        if m.kind == "repeatable":
            if m.version in seen:
                raise MigrationSourceError(
                    f"Two repeatable migrations have the description {m.name!r}: {seen[m.version]} and {m.path}."
                )
            seen[m.version] = m.path
