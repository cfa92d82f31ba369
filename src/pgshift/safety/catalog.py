"""Where the backups are: each one pgshift takes is recorded in the history ledger's event log,
so ``latest`` means the newest backup pgshift wrote, wherever it was written (``--to``).

Backups of a database without a ledger (and older backups) are still found in backup.directory.
"""

from __future__ import annotations

from pathlib import Path

from pgshift.config import Settings
from pgshift.db.connect import connect
from pgshift.errors import BackupFailed
from pgshift.safety.backup import Backup, backup_dir, list_backups, recorded_backups


def latest_backup(settings: Settings, url: str | None = None) -> Path:
    """The newest backup of the database at ``url`` that pgshift recorded in its ledger or finds in
    backup.directory; without a URL, the newest in backup.directory."""
    root = backup_dir(settings)
    database: str | None = None
    candidates: list[Backup] = []
    if url:
        with connect(url, application_name="pgshift-backup") as conn:
            database = str(conn.execute("SELECT current_database()").fetchone()[0])  # type: ignore[index]
            candidates += recorded_backups(conn, settings.history_schema)
    candidates += list_backups(root, database)
    if not candidates:
        where = f"recorded in the history of {database} nor " if database else ""
        raise BackupFailed(f"There is no backup {where}in {root} (backup.directory).",
                           hint="take one with `pgshift backup`, or name a backup folder.")
    return max(candidates, key=lambda b: (b.finished_at, b.path.name)).path


def resolve_backup(settings: Settings, name: str, url: str | None = None) -> Path:
    """A backup folder by path, by folder name in backup.directory, or 'latest' (see latest_backup)."""
    if name == "latest":
        return latest_backup(settings, url)
    root = backup_dir(settings)
    path = Path(name)
    if path.exists():
        return path
    if (root / name).exists():
        return root / name
    hint = f"`pgshift backup list` shows the backups in {root} (backup.directory); name one of them, or 'latest'."
    if path.is_absolute() or root / name == path:
        raise BackupFailed(f"No backup named {name}: {path} does not exist.", hint=hint)
    raise BackupFailed(f"No backup named {name}: neither {path} nor {root / name} exists.", hint=hint)
