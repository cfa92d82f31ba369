CREATE TABLE copies (
    id serial PRIMARY KEY,
    book_id integer NOT NULL REFERENCES books (id) ON DELETE CASCADE,
    barcode varchar(32) NOT NULL UNIQUE,
    shelf text
);
INSERT INTO copies (book_id, barcode) SELECT id, 'B' || lpad(id::text, 8, '0') FROM books;
ALTER TABLE loans ADD COLUMN copy_id integer REFERENCES copies (id);
