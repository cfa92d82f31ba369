"""``verify_backup``: prove a backup can be restored and holds what the manifest says.

Quick: every file's sha256 matches the manifest and pg_restore reads the whole archive, counting
each table's rows (``pg_restore --list`` only reads the table of contents and still succeeds on a
dump cut in half, so it is not verification). A custom-format archive is hashed in the same read
that pg_restore reads it from (its stdin): one pass over the file, not two.

Full (``--restore-test``): restore into a scratch database, compare every table's row count and
content hash with the manifest, compare the restored schema with the archive's, drop the
scratch database.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import secrets
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgshift.db.connect import connect, drop_database, mask_password, server_major, with_dbname
from pgshift.db.privileges import require_createdb
from pgshift.db.scratch import claim, mark, sweep_marked
from pgshift.errors import BackupFailed, DiskFull
from pgshift.safety.copydata import TableData, TableKey, table_pattern, tool_copy_data
from pgshift.safety.follow import ArchiveFollower, TocListing, check_final
from pgshift.safety.manifest import (
    HASHED,
    LARGE,
    MANIFEST,
    Manifest,
    TableStat,
    count_large_objects,
    now_iso,
    pin_settings,
    read_manifest,
    record_verification,
    sha256_file,
    table_stat,
    write_private,
)
from pgshift.safety.readback import has_wide_rows, read_rows
from pgshift.safety.sequences import archived_sequences, compare_sequences
from pgshift.safety.tools import (
    Tool,
    child_connection,
    database_codec,
    ends_with_its_client,
    find_tool,
    out_of_space,
    run_tool,
    server_info,
    with_server_options,
)


@dataclass
class VerifyReport:
    path: Path
    level: str  # quick | full
    ok: bool
    seconds: float = 0.0
    passed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    hint: str | None = None  # when a problem needs another remedy than a new backup
    notes: list[str] = field(default_factory=list)  # what was done beside the checks (a leftover dropped)

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "level": self.level, "ok": self.ok, "seconds": round(self.seconds, 3),
                "passed": self.passed, "problems": self.problems, "notes": self.notes}


def _tool_major(manifest: Manifest) -> int:
    version = manifest.tools.get("pg_dump", str(manifest.server_major))
    try:
        return int(version.split(".")[0])
    except ValueError:
        return manifest.server_major


def restore_tool(manifest: Manifest, bindir: str | Path | None = None) -> Tool:
    """A pg_restore at least as new as the pg_dump that wrote the archive."""
    return find_tool("pg_restore", _tool_major(manifest), bindir=bindir)


def changed_file(path: str) -> str:
    return f"{path} does not match its sha256 in the manifest (the file changed)"


def check_files(folder: Path, manifest: Manifest, *, hashing: bool = True) -> list[str]:
    """Every listed file is there with its size (and, with ``hashing``, its sha256); nothing extra."""
    problems: list[str] = []
    listed = {f.path for f in manifest.files}
    for entry in manifest.files:
        path = folder / entry.path
        if not path.is_file():
            problems.append(f"{entry.path} is missing")
        elif path.stat().st_size != entry.size:
            problems.append(f"{entry.path} is {path.stat().st_size} bytes, the manifest says {entry.size}")
        elif hashing and sha256_file(path) != entry.sha256:
            problems.append(changed_file(entry.path))
    dump = folder / manifest.dump
    if dump.is_dir():
        extra = sorted(str(p.relative_to(folder)) for p in dump.rglob("*") if p.is_file())
        problems.extend(f"{p} is not in the manifest" for p in extra if p not in listed)
    return problems


def read_archive(folder: Path, manifest: Manifest, tool: Tool, *,
                 hashed: Callable[[TableKey], bool] = lambda _: False) -> dict[TableKey, TableData]:
    """Read every byte of the archive back through pg_restore and count each table's rows (with a
    digest where ``hashed`` says so); raises BackupFailed."""
    return tool_copy_data([str(tool.path), "--file=-", str(folder / manifest.dump)], {},
                          what=f"the archive {folder / manifest.dump} does not read back", hashed=hashed)


@dataclass(frozen=True)
class ArchiveRead:
    """One read of a single-file archive: its sha256, and the rows pg_restore read back from the same
    bytes (``tables`` None and ``failure`` set when pg_restore could not read it)."""

    sha256: str
    tables: dict[TableKey, TableData] | None
    failure: str | None = None
    how: str = "sha256 of the archive taken in the same read that read it back (written to the manifest)"


def read_archive_once(path: Path, tool: Tool, *,
                      hashed: Callable[[TableKey], bool] = lambda _: False) -> ArchiveRead:
    """Hash a custom-format archive and read it back through pg_restore (from its stdin) in one pass
    over the file, instead of one read to hash it and another to restore it."""
    digest = hashlib.sha256()
    try:
        tables = tool_copy_data([str(tool.path), "--file=-"], {}, what=f"the archive {path} does not read back",
                                hashed=hashed, stdin_file=path, digest=digest)
    except BackupFailed as exc:
        return ArchiveRead(digest.hexdigest(), None, exc.message)
    return ArchiveRead(digest.hexdigest(), tables)


FOLLOWED = ("the archive read back while pg_dump wrote it; once pg_dump finished, one pass took its sha256 "
            "(written to the manifest) and found it the same file, but for the data offsets in its table of "
            "contents, which pg_restore --list read")


def read_back_followed(path: Path, tool: Tool, follower: ArchiveFollower) -> ArchiveRead:
    """The read-back ``follower`` made while pg_dump wrote ``path``, checked against the finished file in
    one pass; when it cannot be shown to be the same archive, the finished file is read back instead."""
    listing = TocListing(path, tool)
    followed = follower.finish()
    if followed.tables is not None:
        final = check_final(path, followed)
        if listing.succeeded() and final.same:
            return ArchiveRead(final.sha256, followed.tables, how=FOLLOWED)
    listing.succeeded()  # waited for, not left running
    return read_archive_once(path, tool)  # the full read of the finished file says what, if anything, is wrong


def compare_archive_counts(manifest: Manifest, archived: dict[TableKey, TableData]) -> list[str]:
    """Each manifest table's row count against the rows the archive really holds (a large table
    not counted yet only needs to be in the archive)."""
    problems: list[str] = []
    for table in manifest.tables:
        got = archived.get((table.schema, table.name))
        if got is None:
            problems.append(f"the archive holds no data for table {table.qualified}")
        elif table.rows is not None and got.rows != table.rows:
            problems.append(f"the archive holds {got.rows} rows of {table.qualified}, the manifest says {table.rows}")
    return problems


def fill_archive_counts(folder: Path, manifest: Manifest, archived: dict[TableKey, TableData]) -> int:
    """Record, in the manifest, the archive's row count of every large table that was not counted
    on the server at backup time; the number of tables filled in."""
    pending = [t for t in manifest.tables if t.rows is None and (t.schema, t.name) in archived]
    for table in pending:
        table.rows = archived[(table.schema, table.name)].rows
    if pending:
        write_private(folder / MANIFEST, manifest.to_json())
    return len(pending)


def restore_into(folder: Path, manifest: Manifest, tool: Tool, url: str, dbname: str, *,
                 jobs: int = 1, scratch: bool = True, sections: Sequence[str] = ()) -> None:
    """pg_restore the whole archive (or only ``sections``) into the existing database ``dbname``."""
    conninfo, env = child_connection(url, dbname)
    with connect(with_dbname(url, dbname), application_name="pgshift") as conn:
        # Else a pg_restore killed with pgshift leaves a backend building an index or checking a constraint,
        # keeping the database in use until it ends.
        conninfo = ends_with_its_client(conninfo, server_major(conn))
    argv = [str(tool.path), f"--dbname={conninfo}", "--exit-on-error"]
    if scratch:
        argv += ["--no-owner", "--no-privileges"]
    if jobs > 1:
        argv.append(f"--jobs={jobs}")
    argv += [f"--section={section}" for section in sections]
    argv.append(str(folder / manifest.dump))
    part = f" ({' and '.join(sections)} section{'s' if len(sections) > 1 else ''})" if sections else ""
    run_tool(argv, env, what=f"restoring {folder.name}{part} into database {dbname}")


def compare_tables(conn: psycopg.Connection[Any], manifest: Manifest, *, hashes: bool = True,
                   read_elsewhere: Collection[TableKey] = ()) -> list[str]:
    """Each manifest table's count (and hash) recomputed in ``conn``; the differences. The tables in
    ``read_elsewhere`` are only looked for: their rows are counted in the byte-for-byte read of them
    (``compare_large_tables``), so a second scan here would only hold their lock longer."""
    pin_settings(conn)
    # A count of a large table can outlast a role's statement_timeout, kept for the application (this
    # connection, to a scratch or just-restored database, is closed afterwards).
    conn.execute("SELECT set_config('statement_timeout', '0', false)")
    problems: list[str] = []
    for table in manifest.tables:
        exists = conn.execute(
            "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", (table.schema, table.name)
        ).fetchone()
        if not exists or exists[0] is None:
            problems.append(f"table {table.qualified} is missing")
            continue
        if (table.schema, table.name) in read_elsewhere:
            continue
        limit = None if (hashes and table.check in HASHED) else -1
        got = table_stat(conn, table.schema, table.name, 0, hash_max_bytes=limit, method=table.check)
        if got.rows != table.rows:
            problems.append(wrong_count(table, got.rows))
        elif limit is None and got.content_hash != table.content_hash:
            problems.append(f"table {table.qualified} has the right row count but different content "
                            f"(hash {got.content_hash}, manifest {table.content_hash})")
    # Only where the backup holds some: a scratch copy starts from template0, which has none.
    if manifest.large_objects and (objects := count_large_objects(conn)) != manifest.large_objects:
        problems.append(f"{objects} large object(s) were restored, the backup holds {manifest.large_objects}")
    return problems


def wrong_count(table: TableStat, rows: int | None) -> str:
    return f"table {table.qualified} has {rows} rows, the manifest says {table.rows}"


def compare_large_tables(manifest: Manifest, archived: dict[TableKey, TableData], url: str, dbname: str,
                         bindir: str | Path | None) -> list[str]:
    """The rows of every count-only table, restored, against the archive's rows, byte for byte, and
    their number (counted in the same read) against the manifest's.

    Tables above ``backup.hash_max_mb`` get no content hash at backup time (it would cost another
    full read of them while pg_dump runs); this is their content check. The restored table is read
    with pg_dump's session and the archive's time zone, so equal rows give equal text. A table of wide
    rows is read over a connection of this process first (``pgshift.safety.readback``); if that read
    does not match, pg_dump reads it, and its answer is the one reported.

    Each table is read on its own: pg_dump locks every table it dumps until it ends, and the
    post-data restore beside this read needs each table alone for its primary key, which would
    otherwise wait for the read of all of them."""
    tables = [t for t in manifest.tables if t.check in LARGE]
    if not tables:
        return []
    conninfo, env = child_connection(url, dbname)
    env["PGTZ"] = manifest.dump_timezone or "UTC"
    conninfo, unmatched = _with_dump_settings(conninfo, manifest, url, dbname)
    dump = find_tool("pg_dump", _tool_major(manifest), bindir=bindir)
    # pg_dump matches a pattern in the database's encoding, so the argument is given in it.
    encoding = database_codec(manifest.encoding)
    problems: list[str] = []
    for table in tables:
        key = (table.schema, table.name)
        ours, theirs = None, archived.get(key)
        if theirs is not None and manifest.encoding and has_wide_rows(table):
            ours = read_rows(url, dbname, key, timezone=env["PGTZ"], encoding=manifest.encoding,
                             settings=manifest.dump_settings or {})
            if ours is not None and (ours.sha256 != theirs.sha256 or table.rows not in (None, ours.rows)):
                ours = None  # not believed: pg_dump's own read decides
        if ours is None:
            argv: list[str | bytes] = [str(dump.path), f"--dbname={conninfo}", "--data-only",
                                       f"--table={table_pattern(*key)}".encode(encoding, errors="replace")]
            try:
                restored = tool_copy_data(argv, env, what=f"reading the restored table {table.qualified} back",
                                          hashed=lambda _: True)
            except BackupFailed:
                if _table_exists(url, dbname, key):
                    raise
                restored = {}  # dropped: pg_dump fails when its only pattern matches nothing
            ours = restored.get(key)
        if ours is not None and table.rows is not None and ours.rows != table.rows:
            problems.append(wrong_count(table, ours.rows))  # counted in this read: not scanned twice
        if ours is None or theirs is None or ours.sha256 != theirs.sha256:
            problems.append(f"the rows of {table.qualified} restored from the archive differ from the archive's"
                            + "".join(f" ({why})" for why in unmatched))
    return problems


def _with_dump_settings(conninfo: str, manifest: Manifest, url: str, dbname: str) -> tuple[str, list[str]]:
    """``conninfo`` with the output settings the archive was dumped with (a database's ``bytea_output
    = escape`` prints every bytea differently), and what could not be matched on this server."""
    wanted = manifest.dump_settings or {}
    if not wanted:
        return conninfo, []
    options: list[str] = []
    unmatched: list[str] = []
    with connect(with_dbname(url, dbname), application_name="pgshift-verify", autocommit=True) as conn:
        for name, value in sorted(wanted.items()):
            row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
            if row is not None and row[0] == value:
                continue
            try:
                conn.execute("SELECT set_config(%s, %s, false)", (name, value))
            except psycopg.Error:
                unmatched.append(f"the archive was dumped with {name} = {value}, which this server does not accept")
                continue
            options.append(f"-c {name}={_option_escape(value)}")
    return (with_server_options(conninfo, *options) if options else conninfo), unmatched


def _option_escape(value: str) -> str:
    """A value inside libpq's options, where spaces separate arguments unless backslash-escaped."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def _table_exists(url: str, dbname: str, key: TableKey) -> bool:
    with connect(with_dbname(url, dbname), application_name="pgshift-verify") as conn:
        row = conn.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", key).fetchone()
    return row is not None and row[0] is not None


def _normalise(script: str) -> list[str]:
    keep = []
    for line in script.splitlines():
        if not line.strip() or line.startswith(("--", "SET ", "\\restrict", "\\unrestrict")):
            continue
        if line.startswith("SELECT pg_catalog.set_config('search_path'"):
            continue
        keep.append(line.rstrip())
    return keep


def _schema_flags(owners: bool) -> list[str]:
    return ["--schema-only"] + ([] if owners else ["--no-owner", "--no-privileges"])


def archived_schema(folder: Path, manifest: Manifest, restore: Tool, *, owners: bool = False) -> str:
    """The archive's schema script, as ``compare_schema`` compares it."""
    return run_tool([str(restore.path), *_schema_flags(owners), "--file=-", str(folder / manifest.dump)], {},
                    what="reading the archive's schema")


def compare_schema(folder: Path, manifest: Manifest, restore: Tool, url: str, dbname: str,
                   bindir: str | Path | None, *, owners: bool = False, archived: str | None = None) -> list[str]:
    """The archive's schema script (``archived``, read here when None) against a fresh schema-only
    dump of the restored database (with owners and grants when they were restored)."""
    flags = _schema_flags(owners)
    if archived is None:
        archived = archived_schema(folder, manifest, restore, owners=owners)
    conninfo, env = child_connection(url, dbname)
    dump = find_tool("pg_dump", _tool_major(manifest), bindir=bindir)
    restored = run_tool([str(dump.path), *flags, f"--dbname={conninfo}"], env,
                        what="dumping the restored schema")
    a, b = _normalise(archived), _normalise(restored)
    if a == b:
        return []
    diff = [ln for ln in difflib.unified_diff(a, b, "archive", "restored", n=0, lineterm="")
            if not ln.startswith(("---", "+++", "@@"))]
    return [f"the restored schema differs from the archive's: {' | '.join(diff[:6])}"]


SCRATCH_MARK = "pgshift backup verify --restore-test: in progress (dropped by the next one if its run is gone)"


def scratch_name(manifest: Manifest) -> str:
    return f"pgshift_verify_{manifest.database[:30]}_{secrets.token_hex(4)}"


def _sweep_scratch(admin: psycopg.Connection[Any], manifest: Manifest, own: str, report: VerifyReport) -> None:
    """Drop the scratch databases that killed verifications of this database's backups left behind."""
    pattern = re.compile(rf"pgshift_verify_{re.escape(manifest.database[:30])}_[0-9a-f]{{8}}")
    for name in sweep_marked(admin, SCRATCH_MARK, pattern, own=own):
        report.notes.append(f"dropped scratch database {name}, left behind by a verification that was killed")


def verify_backup(
    path: str | Path,
    full: bool = False,
    url: str | None = None,
    *,
    bindir: str | Path | None = None,
    jobs: int = 1,
    record: bool = True,
    preread: ArchiveRead | None = None,
) -> VerifyReport:
    """Verify the backup folder ``path``; raises BackupFailed (exit 13) naming every problem.

    ``full`` restores into a scratch database on the server of ``url`` (any database there that
    the user can connect to; the user needs CREATEDB). ``preread``: the read `pgshift backup` made of
    the archive it just wrote, whose sha256 went into the manifest (not read a second time)."""
    folder = Path(path)
    if folder.is_file():  # the dump file itself was named
        folder = folder.parent
    if full and not url:  # before anything is recorded: an empty report would read as a passed full check
        raise BackupFailed("A full verification (--restore-test) needs a server: pass --database-url.")
    if full and url:
        with connect(url, application_name="pgshift-verify") as conn:
            require_createdb(conn, "The full verification (--restore-test) restores into a scratch database and",
                             instead="run `pgshift backup verify` without --restore-test (the quick check)")
    report = VerifyReport(folder, "full" if full else "quick", ok=False)
    started = time.monotonic()
    try:
        _verify(folder, report, full, url, bindir, jobs, preread)
    finally:
        report.seconds = time.monotonic() - started
        report.ok = not report.problems
        if record and (folder / "manifest.json").exists():
            record_verification(folder, {"at": now_iso(), **report.as_dict()})
    if full and (full_disk := [p for p in report.problems if out_of_space(p)]):
        raise DiskFull(
            f"The full verification of {folder} could not finish: the disk filled up while restoring the "
            f"scratch copy ({'; '.join(p.rstrip('.') for p in full_disk)}). This says nothing against the "
            "backup: it was not fully checked. The scratch database was dropped.",
            hint="free space on the database server (the scratch copy needs about the database's size, "
                 f"{_size_of(folder)}), or run the restore-test on another server with --database-url.")
    if report.problems:
        raise BackupFailed(
            f"The backup {folder} failed {report.level} verification: "
            + "; ".join(p.rstrip(".") for p in report.problems) + ".",
            hint=report.hint or NEW_BACKUP_HINT,
        )
    return report


def _size_of(folder: Path) -> str:
    try:
        return f"{read_manifest(folder).database_size_bytes / 1e6:,.0f} MB on the source"
    except BackupFailed:
        return "unknown"


def _verify(folder: Path, report: VerifyReport, full: bool, url: str | None,
            bindir: str | Path | None, jobs: int, preread: ArchiveRead | None = None) -> None:
    if not folder.is_dir():
        report.problems.append(f"{folder} does not exist or is not a backup folder")
        return
    try:
        manifest = read_manifest(folder)
    except BackupFailed as exc:
        report.problems.append(exc.message)
        return
    single = (folder / manifest.dump).is_file()  # custom format: hashed in the read that restores it
    problems = check_files(folder, manifest, hashing=not single)
    if problems:
        report.problems.extend(problems)
        return  # a changed file is enough; pg_restore could even misread it
    tool = restore_tool(manifest, bindir)
    large = full and _compares_data(manifest, url)
    if not full:
        _read_back(folder, manifest, tool, report, single, large, preread)
        return
    assert url is not None  # verify_backup refused a full verification without one
    recorded = single and large and _recorded_digests(manifest)
    _restore_test(folder, manifest, tool, url, report, bindir, jobs, large,
                  (lambda quick: _recorded_read(folder, manifest, quick)) if recorded else
                  (lambda quick: _read_back(folder, manifest, tool, quick, single, large, preread)))


def _recorded_digests(manifest: Manifest) -> bool:
    """Whether the backup's own read-back recorded the rows of every large table (count and digest)."""
    return all(t.copy_sha256 is not None and t.rows is not None for t in manifest.tables if t.check in LARGE)


def _recorded_read(folder: Path, manifest: Manifest, report: VerifyReport) -> dict[TableKey, TableData] | None:
    """--restore-test's side of the archive when the backup recorded it: the archive's sha256 against the
    manifest proves these are the bytes the backup read back, so the large tables' rows are the ones
    recorded then, and the restore beside this reads every byte of it through pg_restore again."""
    entry = manifest.files[0]
    if sha256_file(folder / entry.path) != entry.sha256:
        report.problems.append(changed_file(entry.path))
        return None
    report.passed.append(f"sha256 of {len(manifest.files)} file(s) match the manifest")
    large = [t for t in manifest.tables if t.check in LARGE]
    report.passed.append(f"the rows of {len(large)} large table(s) as the backup read them back from these bytes "
                         "(row count and sha256 in the manifest)")
    return {(t.schema, t.name): TableData(t.rows, t.copy_sha256) for t in large if t.rows is not None}


def _read_back(folder: Path, manifest: Manifest, tool: Tool, report: VerifyReport, single: bool, large: bool,
               preread: ArchiveRead | None) -> dict[TableKey, TableData] | None:
    """The quick verification's read of the archive: its sha256 (single file), every byte through
    pg_restore, each table's rows against the manifest; the rows read, or None on a problem. With
    ``large``, the large tables' rows are hashed for their byte-for-byte comparison (only theirs: the
    others are compared by their content hash on the server)."""
    compared = {(t.schema, t.name) for t in manifest.tables if t.check in LARGE} if large else set()

    def hashed(key: TableKey) -> bool:
        return key in compared

    if single:
        read = preread if preread is not None and not large else \
            read_archive_once(folder / manifest.dump, tool, hashed=hashed)
        if read.sha256 != manifest.files[0].sha256:
            report.problems.append(changed_file(manifest.files[0].path))
            return None
        report.passed.append(read.how if read is preread
                             else f"sha256 of {len(manifest.files)} file(s) match the manifest")
        if read.tables is None:
            report.problems.append(read.failure or f"the archive {folder / manifest.dump} does not read back")
            return None
        archived = read.tables
    else:
        report.passed.append(f"sha256 of {len(manifest.files)} file(s) match the manifest")
        try:
            archived = read_archive(folder, manifest, tool, hashed=hashed)
        except BackupFailed as exc:
            report.problems.append(exc.message)
            return None
    report.passed.append(f"the whole archive reads back ({tool.path.name} {tool.version})")
    if not manifest.snapshot_shared:
        report.passed.append("row counts not compared with the archive: they were read in another snapshot")
    elif problems := compare_archive_counts(manifest, archived):
        report.problems.extend(problems)
        return None
    elif counted := sum(1 for t in manifest.tables if t.rows is not None):  # none: every count comes from the archive
        report.passed.append(f"the archive holds the manifest's row count for {counted} table(s)")
    if filled := fill_archive_counts(folder, manifest, archived):
        report.passed.append(f"row counts of {filled} large table(s) taken from the archive and written to the "
                             "manifest (backup.large_tables = archive: not counted on the server)")
    return archived


def _compares_data(manifest: Manifest, url: str | None) -> bool:
    """Whether the full verification compares count-only tables byte for byte: only on a server of
    the same major version (another version may print some values differently)."""
    if not url or manifest.dump_timezone is None or not any(t.check in LARGE for t in manifest.tables):
        return False
    with connect(url, application_name="pgshift-verify") as conn:
        return server_info(conn)[1] == manifest.server_major


def _create_scratch(admin: psycopg.Connection[Any], scratch: str, manifest: Manifest) -> None:
    """An empty database in the source's encoding (so rows are stored, and dumped back, as the
    archive has them); the C locale goes with every encoding."""
    statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(scratch))
    if manifest.encoding:
        statement = sql.SQL("{} ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C'").format(
            statement, sql.Literal(manifest.encoding))
    admin.execute(statement)
    mark(admin, scratch, SCRATCH_MARK)


def _restore_scratch(folder: Path, manifest: Manifest, tool: Tool, url: str, admin: psycopg.Connection[Any],
                     scratch: str, jobs: int, report: VerifyReport, sections: Sequence[str] = ()) -> bool:
    """Restore (``sections`` of the archive) into the scratch database; True when owners and grants
    were restored too.

    A superuser restores them, so the schema comparison covers them. When a role the archive
    names does not exist on this server, the scratch database is made again without them."""
    row = admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if row and row[0]:
        try:
            restore_into(folder, manifest, tool, url, scratch, jobs=jobs, scratch=False, sections=sections)
            report.passed.append(f"restored into scratch database {scratch}, owners and grants included")
            return True
        except BackupFailed as exc:
            missing = _MISSING_ROLE.search(exc.message)
            if missing is None:
                raise
            drop_database(admin, scratch)
            _create_scratch(admin, scratch, manifest)
            report.passed.append(f"owners and grants not compared: role {missing.group(1)} does not exist on "
                                 "this server")
    restore_into(folder, manifest, tool, url, scratch, jobs=jobs, sections=sections)
    report.passed.append(f"restored into scratch database {scratch}")
    return False


_MISSING_ROLE = re.compile(r'role "([^"]+)" does not exist')


NEW_BACKUP_HINT = "do not rely on this backup; take a new one with `pgshift backup`."
_DATA_SECTIONS = ("pre-data", "data")
_NOT_RESTORABLE_HERE = ("the archive is intact (its checksums and read-back passed) but does not restore on this "
                        "server: pg_restore's error names what stops it, often something the server lacks (an "
                        "extension, a tablespace, a collation, a function a check calls); another backup would "
                        "restore the same way.")
RESTORE_HINT = (f"{_NOT_RESTORABLE_HERE} Provide it on this server and verify again, or check it on a server like "
                "the source (`pgshift backup verify --restore-test --database-url <that server>`), and do not rely "
                "on this backup until it restores.")
# What `pgshift restore` says instead: its --database-url names the database it restores over.
RESTORE_HERE_HINT = f"{_NOT_RESTORABLE_HERE} Provide it on this server, then run `pgshift restore` again."
POST_DATA_HINT = ("the rows restore but an index, constraint, trigger or grant does not (pg_restore's error names "
                  "it), and a new backup would restore the same way: fix that object in the source database (an "
                  "index's function must not rely on search_path, which pg_restore empties: schema-qualify what it "
                  "calls), then take a new backup with `pgshift backup`; do not rely on this one meanwhile.")


def _restore_test(folder: Path, manifest: Manifest, tool: Tool, url: str, report: VerifyReport,
                  bindir: str | Path | None, jobs: int, large: bool,
                  read_back: Callable[[VerifyReport], dict[TableKey, TableData] | None]) -> None:
    """Restore into a scratch database while the quick verification reads the archive back (the two
    are independent: on 2 cores the read fits beside the restore's server-bound COPY), then compare.

    The restore stops after its data section: the rows are then complete, so they are compared while
    the post-data section (indexes, constraints, triggers, grants) is restored beside them; the
    schema is compared once that is done."""
    scratch = scratch_name(manifest)
    quick = VerifyReport(report.path, report.level, ok=False)
    restored = VerifyReport(report.path, report.level, ok=False)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgshift-verify-read") as pool, \
            connect(url, application_name="pgshift-verify") as admin:
        claim(admin, scratch)  # for this session's life: the next run's sweep leaves the scratch alone
        _sweep_scratch(admin, manifest, scratch, report)
        reading = pool.submit(read_back, quick)
        _create_scratch(admin, scratch, manifest)
        owners = False
        try:
            try:
                owners = _restore_scratch(folder, manifest, tool, url, admin, scratch, jobs, restored,
                                          sections=_DATA_SECTIONS)
            except BackupFailed as exc:
                restored.problems.append(mask_password(exc.message))
            archived = reading.result()
            # What the quick verification finds comes first; a problem there is the answer, as when the
            # restore waited for it.
            report.passed.extend(quick.passed)
            report.problems.extend(quick.problems)
            if quick.problems:
                return
            if restored.problems:
                report.problems.extend(restored.problems)
                report.hint = RESTORE_HINT
                return
            compared = VerifyReport(report.path, report.level, ok=False)
            failed = _compare_restored(
                folder, manifest, tool, url, compared, bindir, scratch, owners, archived if large else None,
                post_data=lambda: restore_into(folder, manifest, tool, url, scratch, jobs=jobs,
                                               scratch=not owners, sections=("post-data",)))
            missing = _MISSING_ROLE.search(failed.message) if failed is not None and owners else None
            if missing is not None:
                # A role that only post-data names (default privileges): restore again without owners
                # and grants, as when pre-data names one, and compare that copy.
                failed = None
                drop_database(admin, scratch)
                _create_scratch(admin, scratch, manifest)
                restored = VerifyReport(report.path, report.level, ok=False, passed=[
                    f"owners and grants not compared: role {missing.group(1)} does not exist on this server"])
                compared = VerifyReport(report.path, report.level, ok=False)
                try:
                    restore_into(folder, manifest, tool, url, scratch, jobs=jobs)
                    restored.passed.append(f"restored into scratch database {scratch}")
                except BackupFailed as exc:
                    restored.problems.append(mask_password(exc.message))
                if not restored.problems:
                    failed = _compare_restored(folder, manifest, tool, url, compared, bindir, scratch, False,
                                               archived if large else None, post_data=None)
            report.passed.extend(restored.passed)
            report.problems.extend(restored.problems)
            if failed is not None:
                compared.problems.insert(0, mask_password(failed.message))
                report.hint = POST_DATA_HINT
            report.passed.extend(compared.passed)
            report.problems.extend(compared.problems)
        finally:
            drop_database(admin, scratch)


def _compare_restored(folder: Path, manifest: Manifest, tool: Tool, url: str, report: VerifyReport,
                      bindir: str | Path | None, scratch: str, owners: bool,
                      archived: dict[TableKey, TableData] | None,
                      post_data: Callable[[], None] | None) -> BackupFailed | None:
    """The restored copy against the manifest and the archive. ``post_data`` (the rest of the restore)
    and the large tables' byte-for-byte read (pg_dump of the copy) run beside the counts: separate
    sessions, each statement of the restore holding one table at a time. The schema is compared as soon
    as ``post_data`` is done, beside that read if it still runs; a failure of ``post_data`` is returned,
    not reported (a missing role is retried)."""
    large = [t.qualified for t in manifest.tables if t.check in LARGE]
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="pgshift-verify-rows") as pool:
        post = pool.submit(post_data) if post_data is not None else None
        schema_script = pool.submit(archived_schema, folder, manifest, tool, owners=owners)
        sequences = pool.submit(archived_sequences, folder / manifest.dump, tool)
        rows = pool.submit(compare_large_tables, manifest, archived, url, scratch, bindir) \
            if large and archived is not None else None
        # Counted in their byte-for-byte read.
        read_elsewhere = {(t.schema, t.name) for t in manifest.tables if t.check in LARGE} if rows is not None \
            else set()
        try:
            with connect(with_dbname(url, scratch), application_name="pgshift-verify") as conn:
                problems = compare_tables(conn, manifest, read_elsewhere=read_elsewhere)
                set_by_archive = sequences.result()
                wrong_sequences = compare_sequences(conn, set_by_archive)
            report.problems.extend(problems)
            if not problems and (counted := len(manifest.tables) - len(read_elsewhere)):
                hashed = sum(1 for t in manifest.tables if t.check in HASHED)
                report.passed.append(f"row counts of {counted} table(s) match"
                                     + (f", and content hashes of {hashed}" if hashed else ""))
            if not problems and manifest.large_objects:
                report.passed.append(f"all {manifest.large_objects} large object(s) are there (counted)")
            report.problems.extend(wrong_sequences)
            if set_by_archive and not wrong_sequences:
                report.passed.append(f"the positions of {len(set_by_archive)} sequence(s) match the archive's")
            failed: BackupFailed | None = None
            if post is not None:
                try:
                    post.result()
                except BackupFailed as exc:
                    failed = exc
            schema: list[str] | BackupFailed | None = None
            if failed is None:  # beside the large tables' read, which a primary key's build may have held back
                try:
                    schema = compare_schema(folder, manifest, tool, url, scratch, bindir, owners=owners,
                                            archived=schema_script.result())
                except BackupFailed as exc:
                    schema = exc
            if rows is not None:
                data = rows.result()
                report.problems.extend(data)
                if not data:
                    report.passed.append(f"the restored rows of {len(large)} large table(s) equal the archive's")
                    report.passed.append(f"row counts of {len(large)} large table(s) match, counted in that read")
            elif large:
                report.passed.append(f"{len(large)} large table(s) compared by row count only (another server "
                                     "version, or a backup without a recorded time zone)")
            if failed is not None:
                return failed
            if isinstance(schema, BackupFailed):
                raise schema
            assert schema is not None
            report.problems.extend(schema)
            if not schema:
                report.passed.append("the restored schema matches the archive's"
                                     + (", owners and grants included" if owners else ""))
        except BackupFailed as exc:
            report.problems.append(mask_password(exc.message))
    return None
