-- expect: hazard
-- group: lock
SET lock_timeout = '2s';
SET statement_timeout = '1min';
CREATE UNIQUE INDEX orders_code_idx ON orders (code);
