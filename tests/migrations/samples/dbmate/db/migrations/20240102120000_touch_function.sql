-- migrate:up
create function touch_updated_at() returns trigger as $$
begin
  new.updated_at := now();
  return new;
end;
$$ language plpgsql;

create trigger users_touch before update on users
  for each row execute function touch_updated_at();

-- migrate:down
drop trigger users_touch on users;
drop function touch_updated_at();
