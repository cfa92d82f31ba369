-- expect: hazard
-- group: dml
SET lock_timeout = '2s';
SET statement_timeout = '1min';
UPDATE users SET email_address = email;
