CREATE OR REPLACE FUNCTION find_books(p_query text) RETURNS SETOF books
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY SELECT * FROM books WHERE title ILIKE '%' || p_query || '%' ORDER BY title;
END;
$$;
