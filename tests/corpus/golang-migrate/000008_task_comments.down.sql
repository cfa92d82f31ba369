- Drop indexes
DROP INDEX task_comments_task_id_idx;
DROP TABLE task_comments;
