-- flyway:executeInTransaction=false
DROP INDEX CONCURRENTLY IF EXISTS loans_open_idx;
