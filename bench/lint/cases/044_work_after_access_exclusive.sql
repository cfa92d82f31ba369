-- expect: hazard
-- group: tx
SET lock_timeout = '2s';
SET statement_timeout = '1min';
BEGIN;
ALTER TABLE users ADD COLUMN note text;
UPDATE accounts SET flag = true WHERE id = 1;
COMMIT;
