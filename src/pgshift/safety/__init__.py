"""Verified backups, safe restore and the pre-migration checklist.

Library entry points (the commands as a user runs them, with backup names and ``latest`` resolved,
are in ``pgshift.safety.commands`` and re-exported by ``pgshift.api``):
``take_backup``, ``verify_backup``, ``latest_verified_backup``, ``backup_required``,
``latest_backup``/``resolve_backup`` (backup names and ``latest``), ``sweep_incomplete``,
``restore_database``, ``restore_table`` and ``run_checks``.
"""

from __future__ import annotations

from pgshift.safety.backup import (
    Backup,
    BackupResult,
    backup_required,
    latest_verified_backup,
    list_backups,
    sweep_incomplete,
    take_backup,
)
from pgshift.safety.catalog import latest_backup, resolve_backup
from pgshift.safety.verify import VerifyReport, verify_backup

__all__ = [
    "Backup",
    "BackupResult",
    "VerifyReport",
    "backup_required",
    "latest_backup",
    "latest_verified_backup",
    "list_backups",
    "resolve_backup",
    "sweep_incomplete",
    "take_backup",
    "verify_backup",
]
