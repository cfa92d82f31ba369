-- expect: hazard
-- group: version
-- pg-version: 10
SET lock_timeout = '2s';
SET statement_timeout = '1min';
ALTER TABLE users ADD COLUMN active boolean DEFAULT true;
