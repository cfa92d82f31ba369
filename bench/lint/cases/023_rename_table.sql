-- expect: hazard
-- group: compat
SET lock_timeout = '2s';
SET statement_timeout = '1min';
ALTER TABLE users RENAME TO accounts;
