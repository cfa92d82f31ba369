CREATE TABLE members (
    id serial PRIMARY KEY,
    card_no varchar(20) NOT NULL UNIQUE,
    joined date NOT NULL DEFAULT current_date
);

CREATE TABLE loans (
    id serial PRIMARY KEY,
    book_id integer NOT NULL REFERENCES books (id),
    member_id integer NOT NULL REFERENCES members (id),
    out_on date NOT NULL DEFAULT current_date,
    due_on date NOT NULL DEFAULT current_date + 21,
    returned_on date
);
