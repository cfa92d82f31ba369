-- flyway:executeInTransaction=false
ALTER TABLE users ADD COLUMN status text;
