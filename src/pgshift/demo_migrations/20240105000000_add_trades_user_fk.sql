-- Playbook example 2, step 3: the foreign key, added NOT VALID: a brief lock, no scan of the
-- existing rows. New writes are checked from now on.
-- pgshift:up
ALTER TABLE trades ADD CONSTRAINT fk_trades_user_id
    FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;
-- pgshift:down
ALTER TABLE trades DROP CONSTRAINT fk_trades_user_id;
