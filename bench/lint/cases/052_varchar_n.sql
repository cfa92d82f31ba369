-- expect: hazard
-- group: types
SET lock_timeout = '2s';
SET statement_timeout = '1min';
CREATE TABLE profiles (id bigint PRIMARY KEY, bio varchar(280));
