-- expect: hazard
-- group: destructive
SET lock_timeout = '2s';
SET statement_timeout = '1min';
TRUNCATE audit_log CASCADE;
