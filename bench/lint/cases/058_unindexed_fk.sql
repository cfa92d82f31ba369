-- expect: hazard
-- group: types
SET lock_timeout = '2s';
SET statement_timeout = '1min';
CREATE TABLE orders2 (id bigint PRIMARY KEY, user_id bigint REFERENCES users (id));
