// The benchmark dataset: many organizations of skewed sizes (a few large tenants, a long tail),
// each with the full domain graph — members, clients, contacts, deals, proposals, contracts,
// engagements, projects, tasks, invoices, time with its cost and timesheets, capacities,
// expenses — and activity events for what was created.
// Set-based SQL, one transaction per organization, loaded as the superuser with
// session_replication_role = replica (triggers off: the data is made consistent by construction,
// and the audit log is written directly), then ANALYZE.
import pg from 'pg';

export interface GenerateOptions {
  orgs: number;
  /** Average tasks per organization; every other table is sized from it. */
  rows: number;
  /** Progress callback: done, total. */
  progress?: (done: number, total: number) => void;
}

export interface BenchOrg {
  id: string;
  /** The owner's user and a live session (for visitor-role queries and access tokens). */
  ownerUserId: string;
  sessionId: string;
  tasks: number;
}

export interface Dataset {
  orgs: BenchOrg[];
  /** Rows per table, all organizations together. */
  tables: Record<string, number>;
  seconds: number;
}

export const BENCH_PASSWORD = 'atrium-bench-password';

/** Tasks per organization: a Zipf-like skew (s = 0.9) scaled so the average is `rows`. */
export function orgSizes(orgs: number, rows: number): number[] {
  const weights = Array.from({ length: orgs }, (_, i) => 1 / (i + 1) ** 0.9);
  const total = weights.reduce((a, b) => a + b, 0);
  return weights.map((w) => Math.max(20, Math.round((w / total) * orgs * rows)));
}

const ORG_SQL = `
with u as (
  insert into app_public.users (email, name)
  select format('bench-%s-%s@bench.example', $1::text, g), 'Bench user ' || g
  from generate_series(1, 5) g
  returning id, email
),
pw as (
  insert into app_private.user_secrets (user_id, password_hash)
  select u.id, public.crypt($2, public.gen_salt('bf', 4)) from u
),
o as (
  insert into app_public.organizations (name, slug) values ('Bench ' || $1, 'bench-' || $1) returning id
),
m as (
  insert into app_public.organization_members (organization_id, user_id, role)
  select o.id, u.id, case when u.email like '%-1@%' then 'owner' else 'member' end::app_public.member_role
  from o, u
  returning organization_id, user_id, role
),
s as (
  insert into app_private.sessions (user_id, organization_id, refresh_token_hash, expires_at)
  select m.user_id, m.organization_id, public.digest(gen_random_uuid()::text, 'sha256'), now() + interval '30 days'
  from m where m.role = 'owner'
  returning id, user_id, organization_id
)
select s.organization_id as id, s.user_id as owner_user_id, s.id as session_id from s`;

/** The rest of one organization's graph, sized by its task count ($2). */
const GRAPH_SQL = [
  `insert into app_public.client_companies (organization_id, name, website)
   select $1, 'Client ' || g, 'https://client' || g || '.example' from generate_series(1, greatest(1, $2 / 40)) g`,
  `insert into app_public.contacts (organization_id, client_company_id, first_name, last_name, email, is_primary)
   select c.organization_id, c.id, 'Pat', 'Contact ' || g, format('pat%s.%s@client.example', g, left(c.id::text, 8)), g = 1
   from app_public.client_companies c cross join generate_series(1, 2) g where c.organization_id = $1`,
  `insert into app_public.deals (organization_id, client_company_id, title, stage, value, probability, expected_close_on, owner_member_id)
   select c.organization_id, c.id, 'Deal ' || g, (array['lead','qualified','proposal','negotiation','won','lost'])[1 + (abs(hashtext(c.id::text || g)) % 6)]::app_public.deal_stage,
     1000 * (1 + g), 10 * (1 + g), current_date + g * 7, m.id
   from app_public.client_companies c cross join generate_series(1, 2) g
   join lateral (select id from app_public.organization_members where organization_id = $1 order by id limit 1) m on true
   where c.organization_id = $1`,
  `insert into app_public.proposals (organization_id, client_company_id, title, status, subtotal, tax_amount, total, sent_at, accepted_at, decided_by_name, currency)
   select c.organization_id, c.id, 'Proposal for ' || c.name, 'accepted', 10000, 0, 10000, now() - interval '60 days', now() - interval '50 days', 'Pat', o.currency
   from app_public.client_companies c join app_public.organizations o on o.id = c.organization_id where c.organization_id = $1`,
  `insert into app_public.contracts (organization_id, proposal_id, client_company_id, title, status, value, signer_name, signed_at, sent_at, currency)
   select p.organization_id, p.id, p.client_company_id, 'Contract: ' || p.title, 'signed', 10000, 'Pat', now() - interval '45 days', now() - interval '48 days', p.currency
   from app_public.proposals p where p.organization_id = $1`,
  `insert into app_public.engagements (organization_id, contract_id, client_company_id, name, status, starts_on, currency)
   select k.organization_id, k.id, k.client_company_id, 'Engagement ' || left(k.id::text, 8), 'active', current_date - 45, k.currency
   from app_public.contracts k where k.organization_id = $1`,
  `insert into app_public.projects (organization_id, engagement_id, name, status, starts_on, due_on)
   select e.organization_id, e.id, 'Project ' || g, 'active', current_date - 40, current_date + 60
   from app_public.engagements e cross join generate_series(1, 2) g where e.organization_id = $1`,
  `insert into app_public.tasks (organization_id, project_id, title, status, priority, position, due_on, assignee_member_id)
   select p.organization_id, p.id, 'Task ' || g,
     (array['todo','in_progress','done'])[1 + g % 3]::app_public.task_status,
     (array['low','normal','high','urgent'])[1 + g % 4]::app_public.task_priority,
     g, current_date + g % 30, (array_agg(m.id) over ())[1 + g % 5]
   from (select p.*, ceil($2::numeric / count(*) over ())::int as per from app_public.projects p where p.organization_id = $1) p
   cross join lateral generate_series(1, p.per) g
   cross join lateral (select id from app_public.organization_members where organization_id = $1 order by id offset g % 5 limit 1) m`,
  `insert into app_public.invoices (organization_id, client_company_id, engagement_id, status, number, issued_on, due_on, subtotal, tax_rate, tax_amount, total, amount_paid, sent_at, paid_at, currency, balance)
   select e.organization_id, e.client_company_id, e.id, s.status::app_public.invoice_status,
     case when s.status = 'draft' then null else row_number() over (order by e.id, g) end,
     case when s.status = 'draft' then null else current_date - 30 + g end,
     case when s.status = 'draft' then null else current_date + g end,
     1000 * g, 10, 100 * g, 1100 * g, case when s.status = 'paid' then 1100 * g else 0 end,
     case when s.status = 'draft' then null else now() - interval '30 days' end,
     case when s.status = 'paid' then now() - interval '10 days' end,
     -- (The triggers that set these are off here: the engagement's currency; total − paid.)
     e.currency, 1100 * g - case when s.status = 'paid' then 1100 * g else 0 end
   from app_public.engagements e cross join generate_series(1, 3) g
   cross join lateral (select (array['paid','sent','draft'])[g] as status) s
   where e.organization_id = $1`,
  `insert into app_private.invoice_counters (organization_id, last_number)
   select $1, coalesce(max(number), 0) from app_public.invoices where organization_id = $1
   on conflict (organization_id) do update set last_number = excluded.last_number`,
  // The month-end data the reports read: two entries of time per task over the last eight weeks
  // (its assignee's, at 150/h, four in five billable), their cost, the weeks approved but the
  // last two, a capacity per member, and an approved billable expense per engagement.
  `insert into app_public.time_entries (organization_id, engagement_id, task_id, member_id, work_date, minutes, billable, rate, rate_source)
   select t.organization_id, p.engagement_id, t.id, t.assignee_member_id, current_date - (7 * g + abs(hashtext(t.id::text)) % 7 + 1),
     60 + 30 * (abs(hashtext(t.id::text || g)) % 7), abs(hashtext(t.id::text || g)) % 5 <> 0, 150, 'engagement'
   from app_public.tasks t join app_public.projects p on p.organization_id = t.organization_id and p.id = t.project_id
   cross join generate_series(0, 1) g
   where t.organization_id = $1 and t.assignee_member_id is not null`,
  `insert into app_public.time_entry_costs (organization_id, id, hourly_cost)
   select t.organization_id, t.id, 60 from app_public.time_entries t where t.organization_id = $1`,
  `insert into app_public.timesheets (organization_id, member_id, week_starts_on, status, submitted_at, decided_at, decided_by)
   select w.organization_id, w.member_id, w.week, case when w.week < current_date - 14 then 'approved' else 'submitted' end,
     now(), case when w.week < current_date - 14 then now() end,
     case when w.week < current_date - 14 then (select id from app_public.organization_members where organization_id = $1 and role = 'owner' limit 1) end
   from (select distinct organization_id, member_id, date_trunc('week', work_date)::date as week from app_public.time_entries where organization_id = $1) w`,
  `insert into app_public.member_capacities (organization_id, member_id, weekly_hours)
   select organization_id, id, 40 from app_public.organization_members where organization_id = $1`,
  `insert into app_public.expense_categories (organization_id, name, billable_by_default, markup_percent) values ($1, 'Travel', true, 10)`,
  `insert into app_public.expenses (organization_id, member_id, category_id, engagement_id, incurred_on, description, amount, currency, billable, markup_percent, status, submitted_at, decided_at)
   select e.organization_id, (select id from app_public.organization_members where organization_id = $1 order by id limit 1), k.id, e.id, current_date - 20,
     'Travel to the client', 120, e.currency, true, 10, 'approved', now(), now()
   from app_public.engagements e join app_public.expense_categories k on k.organization_id = e.organization_id where e.organization_id = $1`,
  `insert into app_public.activity_events (organization_id, actor_id, action, table_name, record_id, new_values)
   select t.organization_id, null::uuid, 'insert', 'tasks', t.id, to_jsonb(t) from app_public.tasks t where t.organization_id = $1
   union all
   select i.organization_id, null, 'insert', 'invoices', i.id, to_jsonb(i) from app_public.invoices i where i.organization_id = $1
   union all
   select d.organization_id, null, 'insert', 'deals', d.id, to_jsonb(d) from app_public.deals d where d.organization_id = $1`,
];

export async function generateDataset(superuserUrl: string, options: GenerateOptions): Promise<Dataset> {
  const started = Date.now();
  const client = new pg.Client({ connectionString: superuserUrl });
  await client.connect();
  const run = Date.now().toString(36);
  try {
    const sizes = orgSizes(options.orgs, options.rows);
    // The tables this database has: the dataset is also made one migration behind the latest
    // (tests/migration-locks.test.ts), without the tables the latest adds.
    const present = new Set((await client.query<{ name: string }>(
      `select format('%s.%s', n.nspname, c.relname) as name from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname in ('app_public', 'app_private') and c.relkind in ('r', 'p')`)).rows.map((r) => r.name));
    const orgs: BenchOrg[] = [];
    for (const [i, tasks] of sizes.entries()) {
      await client.query('begin');
      await client.query(`set local session_replication_role = replica`);
      const { rows } = await client.query<{ id: string; owner_user_id: string; session_id: string }>(ORG_SQL, [`${run}-${i + 1}`, BENCH_PASSWORD]);
      const org = rows[0]!;
      for (const sql of GRAPH_SQL) {
        if (!present.has(/insert into (app_\w+\.\w+)/.exec(sql)![1]!)) continue;
        await client.query(sql, sql.includes("$2") ? [org.id, tasks] : [org.id]);
      }
      await client.query('commit');
      orgs.push({ id: org.id, ownerUserId: org.owner_user_id, sessionId: org.session_id, tasks });
      options.progress?.(i + 1, sizes.length);
    }
    await client.query('analyze');
    const tables: Record<string, number> = {};
    for (const t of ['organizations', 'users', 'client_companies', 'contacts', 'deals', 'proposals', 'contracts', 'engagements', 'projects', 'tasks', 'invoices', 'time_entries', 'timesheets', 'expenses', 'activity_events']) {
      if (!present.has(`app_public.${t}`)) continue;
      tables[t] = Number((await client.query(`select count(*) as n from app_public.${t}`)).rows[0].n);
    }
    return { orgs, tables, seconds: (Date.now() - started) / 1000 };
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    throw error;
  } finally {
    await client.end();
  }
}
