-- expect: safe
-- group: types
SET lock_timeout = '2s';
SET statement_timeout = '1min';
CREATE TABLE IF NOT EXISTS notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
