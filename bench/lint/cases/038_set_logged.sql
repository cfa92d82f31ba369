-- expect: hazard
-- group: lock
SET lock_timeout = '2s';
SET statement_timeout = '1min';
ALTER TABLE import_rows SET LOGGED;
