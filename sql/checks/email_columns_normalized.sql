-- Columns of type app_public.email_address (anywhere) without the BEFORE INSERT OR UPDATE
-- trigger that stores them lower-cased and trimmed: tg_<table>__normalize_emails, attached by
-- app_private.attach_email_normalizer (make_tenant_table, set_column_domain), naming the column.
select a.attrelid::regclass as "table", a.attname as "column"
from pg_attribute a
join pg_class c on c.oid = a.attrelid
where a.atttypid = 'app_public.email_address'::regtype
  and c.relkind in ('r', 'p')
  and a.attnum > 0 and not a.attisdropped
  and not exists (
    select from pg_trigger t
    where t.tgrelid = a.attrelid and not t.tgisinternal and t.tgenabled <> 'D'
      and t.tgfoid = 'app_private.tg__normalize_emails'::regproc
      and t.tgname = format('tg_%s__normalize_emails', c.relname)
      -- BEFORE (bit 1), ROW (bit 0), INSERT (bit 2) and UPDATE (bit 4)
      and t.tgtype & (1 | 2 | 4 | 16) = (1 | 2 | 4 | 16)
      -- tgargs holds the arguments, each ended by a NUL byte (shown as \000 by encode).
      and a.attname::text = any (string_to_array(encode(t.tgargs, 'escape'), '\000'))
  )
order by 1, 2;
