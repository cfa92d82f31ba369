-- expect: safe
-- group: lock
SET lock_timeout = '2s';
SET statement_timeout = '1min';
ALTER TABLE trades VALIDATE CONSTRAINT fk_trades_user_id;
