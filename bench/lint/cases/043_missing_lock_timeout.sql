-- expect: hazard
-- group: timeout
ALTER TABLE users ADD COLUMN note text;
