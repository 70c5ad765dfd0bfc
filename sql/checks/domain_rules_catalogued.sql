-- CHECK constraints of app_public domains without a row in app_private.domain_rules (so a value
-- breaking them would answer the generic CONSTRAINT_VIOLATION instead of the rule's code and
-- message), and rows naming a domain rule that does not exist.
select format_type(con.contypid, null) as domain, con.conname as rule, 'not in app_private.domain_rules' as problem
from pg_constraint con
join pg_type t on t.oid = con.contypid
where t.typnamespace = 'app_public'::regnamespace and con.contype = 'c'
  and not exists (
    select from app_private.domain_rules r
    where r.domain_name = format_type(con.contypid, null) and r.constraint_name = con.conname
  )
union all
select r.domain_name, r.constraint_name, 'no such domain rule'
from app_private.domain_rules r
where not exists (
  select from pg_constraint con
  where con.contype = 'c' and con.contypid = to_regtype(r.domain_name) and con.conname = r.constraint_name
)
order by 1, 2;
