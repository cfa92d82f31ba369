CREATE TABLE authors (
    id serial PRIMARY KEY,
    full_name varchar(200) NOT NULL
);

CREATE TABLE books (
    id serial PRIMARY KEY,
    author_id integer NOT NULL REFERENCES authors (id),
    title varchar(300) NOT NULL,
    isbn char(13),
    published date
);
CREATE INDEX books_author_idx ON books (author_id);
