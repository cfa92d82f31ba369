-- expect: hazard
-- group: dml
SET lock_timeout = '2s';
SET statement_timeout = '1min';
BEGIN;
UPDATE users SET phone = '' WHERE id = 1;
ALTER TABLE users ADD COLUMN note text;
COMMIT;
