-- app_public columns whose name suggests a secret. Secrets (password hashes, token hashes,
-- signing secrets) live in app_private, which GraphQL never exposes.
select c.relname as "table", a.attname as "column"
from pg_attribute a
join pg_class c on c.oid = a.attrelid
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'app_public'
  and c.relkind in ('r', 'p', 'v', 'm')
  and a.attnum > 0 and not a.attisdropped
  and a.attname ~ '(password|secret|token|hash)'
order by 1, 2;
