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
