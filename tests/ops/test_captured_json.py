"""Catalog facts stored in ``ops_state.captured`` by an expand that pgshift released before the facts
were typed still plan the same steps: an expand interrupted before an upgrade is continued after it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgshift import api
from pgshift.errors import MigrationFailed
from pgshift.ops import service
from pgshift.ops.facts import CatalogFacts
from pgshift.ops.model import parse_document
from pgshift.ops.plan import capture, plan_phases
from tests.ops.helpers import make_project

Conn = psycopg.Connection[Any]
FIXTURE = Path(__file__).parent / "fixtures" / "captured_before_typed_facts.json"

INIT = """
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE accounts (id int PRIMARY KEY, email text NOT NULL, code text, parent_id int REFERENCES parent,
                       CONSTRAINT email_len CHECK (length(email) > 0));
CREATE INDEX accounts_email_idx ON accounts (email);
COMMENT ON COLUMN accounts.email IS 'where we write';
INSERT INTO parent VALUES (1);
INSERT INTO accounts VALUES (1, 'a@x', 'same', 1), (2, 'b@x', 'same', 1);
"""
# The unique index cannot be built on the duplicate codes: expand stops after its first step.
OPS = """
operations:
  - rename_column: {table: accounts, from: email, to: email_address}
  - create_index: {table: accounts, name: accounts_code_key, columns: [code], unique: true}
"""


def test_an_expand_interrupted_before_the_facts_were_typed_continues_from_their_json(
        tmp_path: Path, db_url: str, conn: Conn) -> None:
    settings = make_project(tmp_path, db_url, {"001_init.sql": INIT})
    api.migrate(settings)
    (tmp_path / "migrations" / "002_change.ops.yaml").write_text(OPS)
    with pytest.raises(MigrationFailed, match="could not create unique index"):
        api.migrate(settings)
    # What the expand stored is replaced by what the release before typed facts stored for it (the fixture
    # was written by that code, running this very test set-up).
    old = json.loads(FIXTURE.read_text())
    conn.execute("UPDATE pgshift.ops_state SET captured = %s WHERE version = '002'", (json.dumps(old),))
    assert conn.execute("SELECT phase, steps_done FROM pgshift.ops_state").fetchone() == ("expanding", 1)
    conn.execute("UPDATE accounts SET code = 'other' WHERE id = 2")
    report = api.migrate(settings)
    assert report.applied[0].resumed_at == 1
    assert api.status(settings).expanded == {"002": "expanded"}
    service.contract(settings)
    columns = conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attnum > 0 "
                           "AND NOT attisdropped ORDER BY attnum").fetchall()
    assert [c[0] for c in columns] == ["id", "code", "parent_id", "email_address"]
    # The facts read from the old JSON carried the index and the CHECK to the new column (steps after the first).
    assert conn.execute("SELECT pg_get_indexdef('accounts_email_idx'::regclass)").fetchone() == (
        "CREATE INDEX accounts_email_idx ON public.accounts USING btree (email_address)",)
    assert conn.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'email_len'"
                        ).fetchone() == ("CHECK ((length(email_address) > 0))",)
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO accounts (id, email_address, code) VALUES (3, 'c@x', 'other')")


def test_the_typed_facts_write_the_json_shape_the_old_code_wrote(conn: Conn) -> None:
    """So a newer pgshift's ops_state row stays readable by the previous release, and back."""
    conn.execute(INIT)
    facts = capture(conn, parse_document({"operations": [{"rename_column": {
        "table": "accounts", "from": "email", "to": "email_address"}}]}, "x.ops.yaml"))
    old = json.loads(FIXTURE.read_text())
    old["server_version"] = conn.info.server_version
    for rights in old["tables"].values():  # role names differ from machine to machine
        rights["owner"] = rights["runner"] = conn.execute("SELECT current_user::text").fetchone()[0]  # type: ignore[index]
    assert facts.to_json() == old
    assert CatalogFacts.from_json(old) == facts


def test_facts_from_an_early_release_without_the_later_keys_plan_as_having_none() -> None:
    """The first releases stored only the columns: what is missing reads as "none of that kind"."""
    early = {"tables": {"t": {"columns": [{"name": "a", "type": "integer", "notnull": True, "default": None,
                                           "special": False}]}}}
    ops = parse_document({"operations": [{"rename_column": {"table": "t", "from": "a", "to": "b"}}]}, "x.ops.yaml")
    phases = plan_phases(ops, "002", early)
    assert [s.label for s in phases.expand] == ["add t.b kept in sync with a", "create version schema public_002",
                                                "backfill public.t"]
    assert CatalogFacts.from_json(early).tables["t"].rights.owner is None
