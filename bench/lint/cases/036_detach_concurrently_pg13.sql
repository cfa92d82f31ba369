-- expect: hazard
-- group: version
-- pg-version: 13
SET lock_timeout = '2s';
SET statement_timeout = '1min';
ALTER TABLE measurements DETACH PARTITION measurements_2020 CONCURRENTLY;
