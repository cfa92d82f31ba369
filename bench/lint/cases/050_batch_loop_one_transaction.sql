-- expect: hazard
-- group: dml
SET lock_timeout = '2s';
SET statement_timeout = '1min';
DO $$ BEGIN LOOP UPDATE t SET c = 1 WHERE id IN (SELECT id FROM t WHERE c = 0 LIMIT 1000); EXIT WHEN NOT FOUND; END LOOP; END $$;
