-- flyway:executeInTransaction=false
CREATE INDEX CONCURRENTLY loans_open_idx ON loans (member_id) WHERE returned_on IS NULL;
