-- expect: hazard
-- group: types
SET lock_timeout = '2s';
SET statement_timeout = '1min';
CREATE TABLE events2 (id bigint PRIMARY KEY, payload json);
