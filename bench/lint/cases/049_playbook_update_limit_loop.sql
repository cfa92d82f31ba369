-- expect: hazard
-- group: dml
SET lock_timeout = '2s';
SET statement_timeout = '1min';
DO $$
DECLARE
  v_total INT;
  v_processed INT := 0;
  v_batch_size INT := 10000;
BEGIN
  SELECT COUNT(*) INTO v_total FROM huge_table WHERE condition;
  WHILE v_processed < v_total LOOP
    UPDATE huge_table
    SET col = 1
    WHERE condition
    LIMIT v_batch_size;
    v_processed := v_processed + v_batch_size;
  END LOOP;
END;
$$;
