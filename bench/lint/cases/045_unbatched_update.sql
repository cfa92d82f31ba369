-- expect: hazard
-- group: dml
SET lock_timeout = '2s';
SET statement_timeout = '1min';
UPDATE users SET phone = '0000000000' WHERE phone IS NULL;
