"""The backup and restore commands as a user runs them: a Settings (+ options) in, a report out.

Backup names (a folder, its name in backup.directory, or ``latest``) are resolved here and the
connection URL is required here, so the CLI and library callers behave alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pgshift.config import Settings
from pgshift.db.connect import describe_target, require_url
from pgshift.safety import backup as _backup
from pgshift.safety import restore as _restore
from pgshift.safety import verify as _verify
from pgshift.safety.catalog import resolve_backup

# Asked before a restore replaces live data, with the question to put; raise to stop (None: do not ask).
Confirm = Callable[[str], None]


def backup(settings: Settings, *, fmt: str | None = None, jobs: int | None = None,
           directory: str | Path | None = None, keep: int | None = None, verify: bool = True,
           progress: _backup.ProgressFn | None = None) -> _backup.BackupResult:
    """`pgshift backup`: dump, write the manifest, verify (quick) and apply retention."""
    url = require_url(settings.database_url)
    return _backup.take_backup(settings, url, fmt=fmt, jobs=jobs, directory=directory, keep=keep, verify=verify,
                               progress=progress)


def verify_backup(settings: Settings, backup: str, *, restore_test: bool = False) -> _verify.VerifyReport:
    """`pgshift backup verify BACKUP`; ``restore_test`` restores into a scratch database (needs a URL)."""
    url = require_url(settings.database_url) if restore_test else settings.database_url
    folder = resolve_backup(settings, backup, url)
    return _verify.verify_backup(folder, full=restore_test, url=url, bindir=settings.backup.pg_bindir,
                                 jobs=settings.backup.jobs)


@dataclass
class BackupListing:
    directory: Path
    backups: list[_backup.Backup]  # newest first
    incomplete: list[_backup.Incomplete]  # folders a killed backup left, reported and removed


def list_backups(settings: Settings, directory: str | Path | None = None) -> BackupListing:
    """`pgshift backup list`: the backups in ``directory`` (default backup.directory), newest first."""
    root = _backup.backup_dir(settings, directory)
    incomplete = _backup.sweep_incomplete(root)
    return BackupListing(root, _backup.list_backups(root), incomplete)


def restore_database(settings: Settings, backup: str, *, confirm: Confirm | None = None,
                     say: _restore.Say | None = None) -> _restore.RestoreReport:
    """`pgshift restore BACKUP`: restore beside the live database and swap names (the old one is kept)."""
    url = require_url(settings.database_url)
    folder = resolve_backup(settings, backup, url)
    if confirm is not None:
        confirm(f"Restore {describe_target(url)} from {folder.name}? (the current database is renamed and kept)")
    return _restore.restore_database(settings, folder, url, say=say)


def restore_table(settings: Settings, backup: str, table: str, *,
                  confirm: Confirm | None = None) -> _restore.TableRestoreReport:
    """`pgshift restore BACKUP --table T`: replace one table's rows, in one transaction."""
    url = require_url(settings.database_url)
    folder = resolve_backup(settings, backup, url)
    if confirm is not None:
        confirm(f"Replace the rows of {table} in {describe_target(url)} with those of {folder.name}?")
    return _restore.restore_table(settings, folder, table, url)
