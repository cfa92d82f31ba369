-- expect: hazard
-- group: version
-- pg-version: 14
SET lock_timeout = '2s';
SET statement_timeout = '1min';
ALTER TABLE events SET ACCESS METHOD heap;
