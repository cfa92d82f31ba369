"""Where the migrations are when no ``migrations_dir`` is configured: the conventional places of
each supported tool, and the folders their own configuration names.

Looked for, relative to the project folder (the settings file's folder, else the current one):

- Prisma: ``migrations.path`` (or ``schema``) in ``prisma.config.ts``/``.mts``/``.js``/``.mjs``/``.cjs``,
  the ``"prisma": {"schema": ...}`` key of ``package.json`` (migrations sit beside the schema),
  else ``prisma/migrations`` (or ``prisma/schema/migrations``, beside a multi-file schema);
- Flyway: ``FLYWAY_LOCATIONS``, ``flyway.locations`` in ``flyway.conf``, ``[flyway] locations`` in
  ``flyway.toml``/``flyway.user.toml``, ``spring.flyway.locations`` in
  ``src/main/resources/application.properties`` (``filesystem:X`` is the folder X,
  ``classpath:X`` is ``src/main/resources/X``), else ``sql`` beside a Flyway config file and
  ``src/main/resources/db/migration`` (Spring Boot's ``classpath:db/migration``);
- dbmate: ``DBMATE_MIGRATIONS_DIR`` (environment or ``.env``), else ``db/migrations``;
- goose: ``GOOSE_MIGRATION_DIR`` (environment or ``.env``), else the project folder itself when it
  holds goose-annotated ``.sql`` files;
- golang-migrate and pgshift: ``migrations`` and ``db/migrations``.

Only existing folders count. One folder found is used (and said so); several are an error
listing them, unless all but one are empty.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

_PRISMA_CONFIGS = ("prisma.config.ts", "prisma.config.mts", "prisma.config.js", "prisma.config.mjs",
                   "prisma.config.cjs")
_PRISMA_MIGRATIONS_PATH = re.compile(r"""migrations\s*:\s*\{[^}]*?\bpath\s*:\s*(["'`])(?P<path>[^"'`]+)\1""", re.S)
_PRISMA_SCHEMA = re.compile(r"""\bschema\s*:\s*(["'`])(?P<path>[^"'`]+)\1""")
_PROPERTY = re.compile(r"^\s*(?P<key>[\w.\-]+)\s*[=:]\s*(?P<value>.*?)\s*$")
_DOTENV = re.compile(r"""^\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>.*?)\s*$""")


@dataclass
class Candidate:
    path: Path
    reasons: list[str] = field(default_factory=list)

    def holds_files(self) -> bool:
        try:
            return any(self.path.iterdir())
        except OSError:
            return False


@dataclass
class Discovery:
    """What was found in ``root``; ``chosen`` is None when nothing or several were found."""

    root: Path
    candidates: list[Candidate]
    ignored_empty: list[Candidate] = field(default_factory=list)
    announced: bool = False  # shared by copies of the Settings (dataclasses.replace): say it once

    @property
    def chosen(self) -> Candidate | None:
        return self.candidates[0] if len(self.candidates) == 1 else None

    def label(self, candidate: Candidate) -> str:
        try:
            relative = candidate.path.relative_to(self.root)
        except ValueError:
            return str(candidate.path)
        return str(relative) if str(relative) != "." else ". (the project folder)"

    def describe(self, candidate: Candidate) -> str:
        return f"{self.label(candidate)} ({'; '.join(candidate.reasons)})"


def _read(path: Path) -> str:
    """A tool's config file, or "" when it cannot be read: a clue, never a reason to fail."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _read_dotenv(root: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    text = _read(root / ".env")
    for line in text.splitlines():
        match = _DOTENV.match(line)
        if match and not line.lstrip().startswith("#"):
            value = match.group("value")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            else:
                value = value.split(" #", 1)[0].strip()
            values[match.group("key")] = value
    return values


def _prisma(root: Path) -> Iterator[tuple[str, str]]:
    for name in _PRISMA_CONFIGS:
        config = root / name
        if not config.is_file():
            continue
        text = _read(config)
        if match := _PRISMA_MIGRATIONS_PATH.search(text):
            yield match.group("path"), f"migrations.path in {name}"
            return
        if match := _PRISMA_SCHEMA.search(text):
            yield _beside_schema(root, match.group("path")), f"beside the schema {match.group('path')} of {name}"
            return
    package = root / "package.json"
    if package.is_file():
        try:
            data = json.loads(_read(package))
        except ValueError:
            data = {}
        prisma = data.get("prisma") if isinstance(data, dict) else None
        schema = prisma.get("schema") if isinstance(prisma, dict) else None
        if isinstance(schema, str) and schema:
            yield _beside_schema(root, schema), f"beside the schema {schema} named in package.json"
            return
    yield "prisma/migrations", "Prisma's default"
    yield "prisma/schema/migrations", "Prisma's default for a multi-file schema folder"


def _beside_schema(root: Path, schema: str) -> str:
    # A schema file has its migrations folder beside it; a multi-file schema folder, inside it.
    path = root / schema
    folder = path if path.is_dir() else path.parent
    return str((folder / "migrations").relative_to(root)) if not Path(schema).is_absolute() \
        else str(folder / "migrations")


def _flyway_location(location: str) -> str | None:
    location = location.strip().strip("\"'")
    if location.startswith("filesystem:"):
        return location[len("filesystem:"):]
    if location.startswith("classpath:"):
        location = location[len("classpath:"):]
    elif ":" in location:
        return None  # s3:, gcs:, ... are not folders
    return "src/main/resources/" + location.lstrip("/") if location else None


def _flyway(root: Path, environ: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    configured: list[tuple[str, str]] = []
    if env := environ.get("FLYWAY_LOCATIONS"):
        configured += [(loc, "FLYWAY_LOCATIONS") for loc in env.split(",")]
    conf = root / "flyway.conf"
    has_config = conf.is_file()
    if has_config:
        for line in _read(conf).splitlines():
            match = _PROPERTY.match(line)
            if match and match.group("key") == "flyway.locations" and not line.lstrip().startswith(("#", "!")):
                configured += [(loc, "flyway.locations in flyway.conf") for loc in match.group("value").split(",")]
    for name in ("flyway.toml", "flyway.user.toml"):
        toml = root / name
        if not toml.is_file():
            continue
        has_config = True
        try:
            section = tomllib.loads(_read(toml)).get("flyway", {})
        except tomllib.TOMLDecodeError:
            continue
        locations = section.get("locations") if isinstance(section, dict) else None
        if isinstance(locations, str):
            locations = locations.split(",")
        if isinstance(locations, list):
            configured += [(loc, f"[flyway] locations in {name}") for loc in locations if isinstance(loc, str)]
    properties = root / "src/main/resources/application.properties"
    if properties.is_file():
        for line in _read(properties).splitlines():
            match = _PROPERTY.match(line)
            if match and match.group("key") == "spring.flyway.locations":
                configured += [(loc, "spring.flyway.locations in application.properties")
                               for loc in match.group("value").split(",")]
    if configured:
        for location, where in configured:
            if (folder := _flyway_location(location)) is not None:
                yield folder, where
        return
    if has_config:
        yield "sql", "Flyway's default location beside its config file"
    yield "src/main/resources/db/migration", "Flyway's default classpath:db/migration"


def _dbmate(environ: Mapping[str, str], dotenv: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    if value := environ.get("DBMATE_MIGRATIONS_DIR"):
        yield value, "DBMATE_MIGRATIONS_DIR"
    elif value := dotenv.get("DBMATE_MIGRATIONS_DIR"):
        yield value, "DBMATE_MIGRATIONS_DIR in .env"
    else:
        yield "db/migrations", "dbmate's default"


def _goose(root: Path, environ: Mapping[str, str], dotenv: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    if value := environ.get("GOOSE_MIGRATION_DIR"):
        yield value, "GOOSE_MIGRATION_DIR"
    elif value := dotenv.get("GOOSE_MIGRATION_DIR"):
        yield value, "GOOSE_MIGRATION_DIR in .env"
    else:
        from pgshift.migrations.formats import goose

        try:
            holds_goose = goose.detect(root)
        except Exception:  # an unreadable file: not evidence either way
            holds_goose = False
        if holds_goose:
            yield ".", "goose's default (the current folder holds goose migrations)"


def discover(root: Path, environ: Mapping[str, str]) -> Discovery:
    dotenv = _read_dotenv(root)
    found: dict[Path, Candidate] = {}
    places = [
        *_prisma(root), *_flyway(root, environ), *_dbmate(environ, dotenv), *_goose(root, environ, dotenv),
        ("migrations", "the conventional folder of pgshift and golang-migrate"),
        ("db/migrations", "a conventional folder of golang-migrate"),
    ]
    for relative, reason in places:
        path = Path(relative) if Path(relative).is_absolute() else root / relative
        if not path.is_dir():
            continue
        key = path.resolve()
        candidate = found.setdefault(key, Candidate(path))
        if reason not in candidate.reasons:
            candidate.reasons.append(reason)
    candidates = list(found.values())
    discovery = Discovery(root, candidates)
    if len(candidates) > 1:
        # An empty folder beside one holding migrations (an earlier `pgshift init`) is not a rival.
        full = [c for c in candidates if c.holds_files()]
        if full:
            discovery.candidates = full
            discovery.ignored_empty = [c for c in candidates if c not in full]
    return discovery
