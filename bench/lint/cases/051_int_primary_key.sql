-- expect: hazard
-- group: types
SET lock_timeout = '2s';
SET statement_timeout = '1min';
CREATE TABLE trades (id integer PRIMARY KEY, user_id bigint);
CREATE INDEX trades_user_idx ON trades (user_id);
