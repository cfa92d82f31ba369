-- migrate:up
-- users; the first table
create table users (
  id bigserial primary key,
  email text not null,
  updated_at timestamptz not null default now()
);

-- migrate:down
drop table users;
