-- expect: hazard
-- group: version
-- pg-version: 16
SET lock_timeout = '2s';
SET statement_timeout = '1min';
BEGIN;
ALTER TYPE trade_status ADD VALUE 'EXPIRED';
UPDATE trades SET status = 'EXPIRED' WHERE id = 1;
COMMIT;
