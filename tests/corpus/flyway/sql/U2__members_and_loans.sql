DROP TABLE loans;
DROP TABLE members;
