-- expect: safe
-- group: version
-- pg-version: 12
SET lock_timeout = '2s';
SET statement_timeout = '1min';
ALTER TABLE users ADD CONSTRAINT users_phone_nn CHECK (phone IS NOT NULL) NOT VALID;
ALTER TABLE users VALIDATE CONSTRAINT users_phone_nn;
ALTER TABLE users ALTER COLUMN phone SET NOT NULL;
