-- expect: hazard
-- group: lock
SET lock_timeout = '2s';
SET statement_timeout = '1min';
CREATE INDEX orders_user_idx ON orders (user_id);
