-- expect: safe
-- group: lock
SET lock_timeout = '2s';
SET statement_timeout = '1min';
ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_idx;
