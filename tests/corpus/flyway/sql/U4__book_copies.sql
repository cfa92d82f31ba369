ALTER TABLE loans DROP COLUMN copy_id;
DROP TABLE copies;
