-- expect: safe
-- group: lock
SET lock_timeout = '2s';
SET statement_timeout = '1min';
COMMENT ON TABLE users IS 'application users';
