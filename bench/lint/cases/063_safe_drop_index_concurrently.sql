-- expect: safe
-- group: lock
SET lock_timeout = '2s';
SET statement_timeout = '1min';
DROP INDEX CONCURRENTLY IF EXISTS orders_user_idx;
