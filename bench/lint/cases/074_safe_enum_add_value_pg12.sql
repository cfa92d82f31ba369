-- expect: safe
-- group: version
-- pg-version: 12
SET lock_timeout = '2s';
SET statement_timeout = '1min';
ALTER TYPE trade_status ADD VALUE IF NOT EXISTS 'EXPIRED';
