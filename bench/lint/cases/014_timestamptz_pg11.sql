-- expect: hazard
-- group: version
-- pg-version: 11
SET lock_timeout = '2s';
SET statement_timeout = '1min';
CREATE TABLE IF NOT EXISTS _x ();
ALTER TABLE events ALTER COLUMN at TYPE timestamptz;
