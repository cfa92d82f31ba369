ALTER TABLE books ADD CONSTRAINT books_isbn_key UNIQUE (isbn);
