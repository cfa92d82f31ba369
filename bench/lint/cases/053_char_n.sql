-- expect: hazard
-- group: types
SET lock_timeout = '2s';
SET statement_timeout = '1min';
CREATE TABLE countries (id bigint PRIMARY KEY, code char(2));
