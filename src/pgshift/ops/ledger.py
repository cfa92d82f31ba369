"""The ops_state table beside pgshift's ledger: which operations migrations are mid-way.

Kept apart from :mod:`pgshift.ops.phases` (which runs the phases) so the layers below ops (the
lint gate's schema model, status) can read it without importing the phase runner.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

# Phases of an operations migration that is expanded (or mid-phase) and not yet contracted.
ACTIVE = ("expanding", "expanded", "contracting", "aborting")


def state_table(schema: str) -> sql.Identifier:
    return sql.Identifier(schema, "ops_state")


def active_versions(conn: psycopg.Connection[Any], schema: str) -> dict[str, str]:
    """version -> phase for every ops migration expanded (or mid-phase) and not yet contracted."""
    exists = conn.execute("SELECT to_regclass(format('%%I.ops_state', %s::text)) IS NOT NULL", (schema,)).fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute(sql.SQL("SELECT version, phase FROM {} WHERE phase = ANY(%s) ORDER BY version")
                        .format(state_table(schema)), (list(ACTIVE),)).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def contract_due(conn: psycopg.Connection[Any], schema: str) -> dict[str, tuple[datetime, datetime]]:
    """version -> (expanded since, contract due after) for the expanded migrations a `pgshift deploy` with
    deploy.contract = "later" recorded a soak for (its newest 'deploy-soak' event per version)."""
    active = active_versions(conn, schema)
    if not active:
        return {}
    rows = conn.execute(sql.SQL(
        "SELECT DISTINCT ON (version) version, (detail->>'expanded_at')::timestamptz, (detail->>'due_at')::timestamptz "
        "FROM {} WHERE event = 'deploy-soak' AND version = ANY(%s) ORDER BY version, id DESC"
    ).format(sql.Identifier(schema, "events")), (list(active),)).fetchall()
    return {str(r[0]): (r[1], r[2]) for r in rows if active.get(str(r[0])) == "expanded"}
