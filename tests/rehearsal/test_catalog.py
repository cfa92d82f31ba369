"""The catalog snapshot: deterministic, and its diff names what changed."""

from __future__ import annotations

import psycopg

from pgshift.rehearsal import catalog


def test_snapshot_is_deterministic_and_covers_the_catalog(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute("""
        CREATE EXTENSION IF NOT EXISTS plpgsql;
        CREATE TYPE mood AS ENUM ('sad', 'ok');
        CREATE SEQUENCE counter START 5;
        CREATE TABLE t (id int PRIMARY KEY, m mood, x text DEFAULT 'q' NOT NULL);
        ALTER TABLE t ADD CONSTRAINT x_nonempty CHECK (x <> '') NOT VALID;
        CREATE INDEX t_x ON t (x);
        CREATE VIEW v AS SELECT id FROM t;
        CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
        CREATE TRIGGER t_touch BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION touch();
        CREATE SCHEMA pgshift; CREATE TABLE pgshift.ledger (x int);
    """)
    first = catalog.snapshot(conn)
    conn.execute("SET search_path = pg_catalog, public")
    assert catalog.snapshot(conn) == first  # independent of the session's search_path
    assert first["enum"] == {"public.mood": "'sad', 'ok'"}
    assert "NOT VALID" in first["constraint"]["public.t.x_nonempty"]
    assert first["index"]["public.t_x"].startswith("CREATE INDEX t_x ON public.t")
    assert "public.counter" in first["sequence"] and "public.v" in first["view"]
    assert "public.touch()" in first["function"] and "public.t.t_touch" in first["trigger"]
    assert "plpgsql" in first["extension"]
    assert not any("pgshift" in name for names in first.values() for name in names)  # history excluded

    conn.execute("CREATE INDEX t_m ON t (m); ALTER TABLE t ALTER COLUMN x DROP NOT NULL; "
                 "ALTER TYPE mood ADD VALUE 'glad'; DROP VIEW v")
    after = catalog.snapshot(conn)
    assert catalog.fingerprint(after) != catalog.fingerprint(first)
    lines = [c.line() for c in catalog.diff(first, after)]
    assert "+ index public.t_m: CREATE INDEX t_m ON public.t USING btree (m)" in lines
    assert any(line.startswith("~ column public.t.x: text not null") for line in lines)
    assert any(line.startswith("~ enum public.mood:") and "'glad'" in line for line in lines)
    assert any(line.startswith("- view public.v:") for line in lines)
    assert catalog.diff(after, after) == []
