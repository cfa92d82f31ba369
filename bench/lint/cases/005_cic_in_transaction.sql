-- expect: hazard
-- group: tx
SET lock_timeout = '2s';
SET statement_timeout = '1min';
BEGIN;
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_user_idx ON orders (user_id);
COMMIT;
