-- Per-database set-up, run by a superuser connected to Atrium's database, after roles.sql:
-- `npm run db:setup` runs it, and graphile-migrate runs it after `reset` (.gmrc afterReset).
alter database :DATABASE_NAME owner to :DATABASE_OWNER;
-- Only Atrium's own roles may connect.
revoke all on database :DATABASE_NAME from public;
grant connect on database :DATABASE_NAME to :DATABASE_AUTHENTICATOR, :DATABASE_WORKER;
-- graphile-worker installs its queue into this schema as the worker role. Its bootstrap runs
-- `create schema if not exists`, which PostgreSQL checks against CREATE on the database even
-- when the schema exists, hence the grant; the worker owns nothing else.
create schema if not exists graphile_worker authorization :DATABASE_WORKER;
grant create on database :DATABASE_NAME to :DATABASE_WORKER;
-- Statement statistics for `npm run doctor` (latency per statement), when the server loads the
-- library (shared_preload_libraries = 'pg_stat_statements': the embedded server and
-- docker-compose.yml do). Without it, doctor says so and skips that check.
do $stats$
begin
  if 'pg_stat_statements' = any (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))
     and exists (select from pg_available_extensions where name = 'pg_stat_statements') then
    create extension if not exists pg_stat_statements;
  end if;
end
$stats$;
