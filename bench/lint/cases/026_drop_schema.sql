-- expect: hazard
-- group: destructive
SET lock_timeout = '2s';
SET statement_timeout = '1min';
DROP SCHEMA reporting CASCADE;
