CREATE OR REPLACE VIEW open_loans AS
SELECT l.id, m.card_no, b.title, l.due_on
FROM loans l
JOIN members m ON m.id = l.member_id
JOIN books b ON b.id = l.book_id
WHERE l.returned_on IS NULL;
