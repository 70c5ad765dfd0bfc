-- Distributes a migrated Atrium database over Citus by organization (docs/SCALE_OUT.md), as
-- app_private.table_placements() says: reference tables first, then the distributed ones (each
-- after the tables it refers to, colocated with each other), then the coordinator-local ones.
-- The foreign keys Citus cannot keep (app_private.undistributable_foreign_keys()) are dropped.
-- Run once as a superuser on the coordinator, after `npm run migrate -- migrate` and before any
-- data is loaded (docker-compose.yml, profile "citus"):
--
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f sql/citus/distribute.sql
--
-- Not run in this repository's CI: its machines have no Citus.
set citus.enable_unsafe_triggers = on; -- the audit and outbox triggers run on the shards
do $distribute$
declare
  v_fk record;
  v_table text;
  v_done text[] := '{}';
  v_first text;
  v_progress boolean;
begin
  if not exists (select from pg_extension where extname = 'citus') then
    raise exception 'Citus is not installed in this database (create extension citus)';
  end if;

  for v_fk in select * from app_private.undistributable_foreign_keys() loop
    execute format('alter table %s drop constraint if exists %I', v_fk.table_name, v_fk.constraint_name);
  end loop;

  for v_table in select table_name from app_private.table_placements() where placement = 'reference' loop
    perform create_reference_table(v_table::regclass);
  end loop;

  -- Distributed tables in the order of their foreign keys: a table once every distributed table it
  -- refers to is distributed.
  loop
    v_progress := false;
    for v_table in
      select p.table_name from app_private.table_placements() p
      where p.placement = 'distributed' and p.table_name <> all (v_done)
        and not exists (
          select from pg_constraint con join app_private.table_placements() r on to_regclass(r.table_name) = con.confrelid
          where con.conrelid = to_regclass(p.table_name) and con.contype = 'f' and r.placement = 'distributed'
            and con.confrelid <> con.conrelid and r.table_name <> all (v_done))
      order by 1
    loop
      if v_first is null then
        perform create_distributed_table(v_table::regclass, 'organization_id');
        v_first := v_table;
      else
        perform create_distributed_table(v_table::regclass, 'organization_id', colocate_with => v_first);
      end if;
      v_done := v_done || v_table;
      v_progress := true;
    end loop;
    exit when not v_progress;
  end loop;
  if exists (select from app_private.table_placements() where placement = 'distributed' and table_name <> all (v_done)) then
    raise exception 'distributed tables left over (a cycle of foreign keys?): %',
      (select string_agg(table_name, ', ') from app_private.table_placements() where placement = 'distributed' and table_name <> all (v_done));
  end if;

  for v_table in select table_name from app_private.table_placements() where placement = 'local' loop
    perform citus_add_local_table_to_metadata(v_table::regclass, cascade_via_foreign_keys => true);
  end loop;
end
$distribute$;
