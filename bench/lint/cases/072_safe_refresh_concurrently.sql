-- expect: safe
-- group: lock
SET lock_timeout = '2s';
SET statement_timeout = '1min';
REFRESH MATERIALIZED VIEW CONCURRENTLY daily_totals;
