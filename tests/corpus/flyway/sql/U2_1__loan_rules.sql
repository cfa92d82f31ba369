DROP FUNCTION overdue_count(integer);
ALTER TABLE loans DROP CONSTRAINT loans_dates_ok;
