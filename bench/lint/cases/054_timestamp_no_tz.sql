-- expect: hazard
-- group: types
SET lock_timeout = '2s';
SET statement_timeout = '1min';
CREATE TABLE logins (id bigint PRIMARY KEY, at timestamp);
