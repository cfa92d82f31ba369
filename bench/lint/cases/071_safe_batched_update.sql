-- expect: safe
-- group: dml
SET lock_timeout = '2s';
SET statement_timeout = '1min';
UPDATE users SET phone = '' WHERE id IN (SELECT id FROM users WHERE phone IS NULL LIMIT 10000);
