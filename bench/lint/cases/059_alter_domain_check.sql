-- expect: hazard
-- group: lock
SET lock_timeout = '2s';
SET statement_timeout = '1min';
ALTER DOMAIN positive_int ADD CONSTRAINT positive CHECK (VALUE > 0);
