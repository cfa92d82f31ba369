-- VALIDATE in its own transaction: it scans the existing rows under SHARE UPDATE EXCLUSIVE,
-- which lets reads and writes go on.
-- pgshift:up
ALTER TABLE trades VALIDATE CONSTRAINT fk_trades_user_id;
-- pgshift:down
-- (nothing to undo: the constraint is dropped by the previous migration's down part)
