-- Atrium's database roles. Run by a superuser once per PostgreSQL cluster, and again after
-- changing a password. `npm run db:setup` runs it (with database.sql) for you; to run it by hand,
-- print it with the role names filled in and pipe it to psql as a superuser:
--
--   npm run --silent db:setup -- --print | psql "$SUPERUSER_URL" -v ON_ERROR_STOP=1
--
-- Role names are graphile-migrate placeholders (:DATABASE_OWNER, ...) filled from the
-- environment (DATABASE_OWNER, ... ; see .env.example). Passwords are read from the settings
-- atrium.owner_password, atrium.authenticator_password and atrium.worker_password when they are
-- set (db:setup sets them from the environment); otherwise passwords are left as they are.
do $setup$
declare
  v_role text;
begin
  -- owner: owns every object and runs the migrations; no request ever runs as it.
  -- BYPASSRLS because the SECURITY DEFINER helpers it owns (membership check, sign-in, audit)
  -- must read tenant tables whose row-level security is FORCED. Not a superuser.
  if not exists (select from pg_roles where rolname = ':DATABASE_OWNER') then
    create role :DATABASE_OWNER;
  end if;
  alter role :DATABASE_OWNER with login nosuperuser nocreatedb nocreaterole noreplication bypassrls inherit;

  -- authenticator: the API's connection pool. NOINHERIT: by itself it can do nothing; every
  -- request switches to the visitor role (SET LOCAL ROLE) before running any query.
  if not exists (select from pg_roles where rolname = ':DATABASE_AUTHENTICATOR') then
    create role :DATABASE_AUTHENTICATOR;
  end if;
  alter role :DATABASE_AUTHENTICATOR with login noinherit nosuperuser nocreatedb nocreaterole noreplication nobypassrls;

  -- visitor: what every API request runs as; the row-level security policies are TO it.
  if not exists (select from pg_roles where rolname = ':DATABASE_VISITOR') then
    create role :DATABASE_VISITOR;
  end if;
  alter role :DATABASE_VISITOR with nologin nosuperuser nocreatedb nocreaterole noreplication nobypassrls;

  -- worker: the job worker's connection. It owns the job queue (schema graphile_worker) and is
  -- subject to row-level security like a request: it inherits the visitor role, and a task sets
  -- app.org_id to its job's organization, so it sees that organization only. It does NOT bypass
  -- RLS, so a bug in a task cannot leak another tenant's rows.
  if not exists (select from pg_roles where rolname = ':DATABASE_WORKER') then
    create role :DATABASE_WORKER;
  end if;
  alter role :DATABASE_WORKER with login inherit nosuperuser nocreatedb nocreaterole noreplication nobypassrls;

  -- producer: other services that queue jobs with app_private.enqueue_job() or enqueue_jobs() (docs/DATA_FLOWS.md).
  -- NOLOGIN: grant it to the login role of each such service (`grant atrium_producer to billing_svc`).
  -- It may call that one function and nothing else: no table, no row of any tenant.
  if not exists (select from pg_roles where rolname = ':DATABASE_PRODUCER') then
    create role :DATABASE_PRODUCER;
  end if;
  alter role :DATABASE_PRODUCER with nologin nosuperuser nocreatedb nocreaterole noreplication nobypassrls;

  grant :DATABASE_VISITOR to :DATABASE_AUTHENTICATOR;
  grant :DATABASE_VISITOR to :DATABASE_WORKER;
  -- The owner enqueues jobs from triggers and installs the queue schema as the worker.
  grant :DATABASE_WORKER to :DATABASE_OWNER;
  -- The owner reads the server's statistics (every session's transactions, pg_stat_statements of
  -- every role, WAL archiving): `npm run doctor` runs as it when it has no superuser. Read-only.
  grant pg_monitor to :DATABASE_OWNER;

  foreach v_role in array array['owner', 'authenticator', 'worker'] loop
    if nullif(current_setting(format('atrium.%s_password', v_role), true), '') is not null then
      execute format('alter role %I with password %L',
        case v_role when 'owner' then ':DATABASE_OWNER' when 'authenticator' then ':DATABASE_AUTHENTICATOR' else ':DATABASE_WORKER' end,
        current_setting(format('atrium.%s_password', v_role)));
    end if;
  end loop;
end
$setup$;
