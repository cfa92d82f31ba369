-- expect: safe
-- group: version
-- pg-version: 16
SET lock_timeout = '2s';
SET statement_timeout = '1min';
ALTER TABLE users ADD COLUMN IF NOT EXISTS active boolean DEFAULT true;
