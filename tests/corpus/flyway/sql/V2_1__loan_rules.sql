ALTER TABLE loans ADD CONSTRAINT loans_dates_ok CHECK (due_on >= out_on);

CREATE FUNCTION overdue_count(p_member integer) RETURNS bigint
    LANGUAGE sql STABLE
    AS $$ SELECT count(*) FROM loans WHERE member_id = p_member AND returned_on IS NULL AND due_on < current_date $$;
