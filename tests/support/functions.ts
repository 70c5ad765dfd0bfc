// Every function in app_public, read from the catalog at run time, with arguments a test can call
// it with: a new function is covered by the generated tests the moment it exists.
//
// A uuid argument names a row; which table it names is read from the catalog too: the table a
// foreign key column of the same name references (`engagement_id`, `template_id`, `endpoint_id`,
// `access_id`, …), else the table named after it (`bill_id` → bills), else, for a bare `id`, the
// table the function returns (soft_delete_x, retry_webhook_delivery) or that its result names
// (rotate_webhook_secret returns `endpoint_id`). An argument none of these explain fails the
// test that needs it, naming the function: extend argTable then.
// Other arguments get a plain valid value of their type (an email for `email`, a URL for `url`).
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { asVisitor, pool, sessionOf, unique } from './db.ts';
import { approveTime, commitAs, one, type Tenant } from './fixtures.ts';

export interface DbArg {
  name: string;
  /** format_type of the argument, for a cast: `uuid`, `numeric`, `app_public.payment_method`. */
  type: string;
}

export interface DbFunction {
  name: string;
  /** `app_public.name(arg types)` */
  signature: string;
  args: DbArg[];
  /** The app_public table whose rows it returns (its return type is that table's row type), if any. */
  returnsTable: string | null;
  /** The tables its uuid arguments name, by argument name. */
  argTables: Record<string, string>;
  /** Declared STABLE or IMMUTABLE: it only reads. */
  readOnly: boolean;
}

interface ProcRow {
  name: string;
  signature: string;
  arg_names: string[] | null;
  read_only: boolean;
  arg_types: string[];
  returns_table: string | null;
  result_attributes: string[];
}

/**
 * Every function in app_public (not procedures, aggregates or trigger functions, nor computed
 * columns: functions of a table's row, which read only what that row and the caller's own rights
 * give them, e.g. app_public.activity_events_changes).
 */
export async function appPublicFunctions(): Promise<DbFunction[]> {
  const owner = pool('owner');
  const { rows } = await owner.query<ProcRow>(
    `select p.proname as name, p.oid::regprocedure::text as signature, p.proargnames as arg_names, p.provolatile <> 'v' as read_only,
       array(select format_type(t, null) from unnest(p.proargtypes) as t) as arg_types,
       (select c.relname from pg_class c where c.oid = ty.typrelid and c.relkind in ('r', 'p') and c.relnamespace = 'app_public'::regnamespace) as returns_table,
       array(select a.attname::text from pg_attribute a where a.attrelid = ty.typrelid and a.attnum > 0 and not a.attisdropped) as result_attributes
     from pg_proc p
     join pg_type ty on ty.oid = p.prorettype
     where p.pronamespace = 'app_public'::regnamespace and p.prokind = 'f' and p.prorettype <> 'trigger'::regtype
       and (p.proargmodes is null or p.proargmodes <@ array['i']::"char"[])
       and not exists (select from unnest(p.proargtypes) as t join pg_type at on at.oid = t where at.typrelid <> 0)
     order by p.proname, p.oid`,
  );
  const { rows: fks } = await owner.query<{ column: string; table: string }>(
    `select distinct a.attname::text as column, rc.relname::text as table
     from pg_constraint c
     cross join lateral unnest(c.conkey) as k(attnum)
     join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum
     join pg_class rc on rc.oid = c.confrelid
     where c.contype = 'f' and a.attname <> 'organization_id'
       and rc.relnamespace = 'app_public'::regnamespace
       and c.connamespace in ('app_public'::regnamespace, 'app_private'::regnamespace)`,
  );
  const { rows: tables } = await owner.query<{ name: string }>(`select relname::text as name from pg_class where relnamespace = 'app_public'::regnamespace and relkind in ('r', 'p')`);
  const tableNames = new Set(tables.map((t) => t.name));
  const byColumn = new Map<string, Set<string>>();
  for (const fk of fks) byColumn.set(fk.column, (byColumn.get(fk.column) ?? new Set()).add(fk.table));

  const argTable = (fn: ProcRow, arg: string): string | undefined => {
    // (`id` is a row's own key, even where it is also a foreign key: time_entry_costs.id is its
    // time entry's.)
    const referenced = arg === 'id' ? undefined : byColumn.get(arg);
    if (referenced?.size === 1) return [...referenced][0];
    if (arg === 'record_id' && fn.arg_names?.includes('table_name')) return 'invoices';
    const stem = arg.replace(/_id$/, '');
    if (arg !== 'id') return [`${stem}s`, `${stem}es`, `${stem.replace(/y$/, 'ies')}`].find((t) => tableNames.has(t));
    if (fn.returns_table) return fn.returns_table;
    const named = fn.result_attributes.map((attribute) => byColumn.get(attribute)).filter((t) => t?.size === 1);
    return named.length === 1 ? [...named[0]!][0] : undefined;
  };

  return rows.map((fn) => {
    const args = fn.arg_types.map((type, i) => ({ name: fn.arg_names?.[i] ?? `$${i + 1}`, type }));
    const argTables: Record<string, string> = {};
    for (const arg of args.filter((a) => a.type === 'uuid')) {
      const table = argTable(fn, arg.name);
      if (!table) throw new Error(`Which table does argument ${arg.name} of ${fn.signature} name? Extend argTable in tests/support/functions.ts.`);
      argTables[arg.name] = table;
    }
    return { name: fn.name, signature: fn.signature, args, returnsTable: fn.returns_table, argTables, readOnly: fn.read_only };
  });
}

/** A plain valid value for a non-uuid argument. */
export async function plainValue(arg: DbArg): Promise<unknown> {
  switch (arg.type) {
    case 'text':
      if (arg.name === 'email') return `${unique('generated')}@example.com`;
      if (arg.name === 'url') return 'https://hooks.example.test/generated';
      if (arg.name === 'permission') return 'deals.read';
      // the history functions take a table and a record of it (record_id: see argTable)
      if (arg.name === 'table_name') return 'invoices';
      return 'Generated';
    case 'text[]':
      return arg.name === 'event_types' ? ['*'] : ['Generated'];
    case 'numeric':
    case 'integer':
    case 'bigint':
      return 1;
    case 'boolean':
      return false;
    case 'date':
      return '2026-01-05';
    case 'timestamp with time zone':
      return new Date().toISOString();
    case 'uuid':
      return randomUUID();
    case 'app_public.document_line[]':
      return '{"(Generated,1,1,)"}'; // one line: description, quantity, unit price, no tax code
    case 'app_public.template_task_line[]':
      return '{"(Generated,,0,60,,)"}'; // one task, no milestone
    case 'app_public.template_milestone_line[]':
      return '{}';
    case 'app_public.time_entry_line[]':
      return '{}'; // (an empty week: submitted as it is)
    default: {
      const { rows } = await pool('owner').query<{ label: string }>(
        `select e.enumlabel as label from pg_enum e where e.enumtypid = $1::regtype order by e.enumsortorder limit 1`,
        [arg.type],
      );
      if (!rows.length) throw new Error(`No plain value for an argument of type ${arg.type}: extend plainValue in tests/support/functions.ts.`);
      return arg.type === 'app_public.member_role' ? 'member' : rows[0].label;
    }
  }
}

/** The ids of `table`'s rows in `orgId` (read as the owner role, which bypasses RLS). */
export async function rowIds(table: string, orgId: string): Promise<string[]> {
  const column = table === 'organizations' ? 'id' : 'organization_id';
  const { rows } = await pool('owner').query<{ id: string }>(`select id from app_public.${table} where ${column} = $1 order by id`, [orgId]);
  return rows.map((r) => r.id);
}

export interface Outcome {
  /** SQLSTATE of the error, if the call failed. */
  code?: string;
  message?: string;
  /** The rows it returned, as JSON (a null composite counts as none). */
  rows: unknown[];
  /** app_public tables it wrote to (rows inserted, updated or deleted), but the activity log. */
  wrote: string[];
}

const WRITES = `select relname::text as name, n_tup_ins + n_tup_upd + n_tup_del as n from pg_stat_xact_user_tables where schemaname = 'app_public'`;

async function writeCounts(client: pg.PoolClient): Promise<Map<string, number>> {
  return new Map((await client.query<{ name: string; n: string }>(WRITES)).rows.map((r) => [r.name, Number(r.n)]));
}

const isNothing = (value: unknown) => value === null || (typeof value === 'object' && Object.values(value as object).every((v) => v === null));

/**
 * Calls `fn` with `values` (by argument) inside a savepoint of `client`'s transaction, rolled back
 * afterwards: what it answered, returned and wrote.
 */
export async function callIn(client: pg.PoolClient, fn: DbFunction, values: Record<string, unknown>): Promise<Outcome> {
  const params = fn.args.map((arg) => values[arg.name]);
  const list = fn.args.map((arg, i) => `$${i + 1}::${arg.type}`).join(', ');
  const before = await writeCounts(client);
  await client.query('savepoint call');
  try {
    const { rows } = await client.query<{ j: unknown }>(`select to_jsonb(r) as j from app_public.${fn.name}(${list}) as r`, params);
    const after = await writeCounts(client);
    const wrote = [...after].filter(([name, n]) => n > (before.get(name) ?? 0) && name !== 'activity_events').map(([name]) => name).sort();
    return { rows: rows.map((r) => r.j).filter((j) => !isNothing(j)), wrote };
  } catch (error) {
    const e = error as { code?: string; message?: string };
    return { code: e.code, message: e.message, rows: [], wrote: [] };
  } finally {
    await client.query('rollback to savepoint call');
  }
}

/** Every combination of one candidate per argument (at most `limit`). */
export function* combinations(candidates: Record<string, unknown[]>, limit = 64): Generator<Record<string, unknown>> {
  const names = Object.keys(candidates);
  let emitted = 0;
  function* walk(i: number, acc: Record<string, unknown>): Generator<Record<string, unknown>> {
    if (emitted >= limit) return;
    if (i === names.length) {
      emitted++;
      yield { ...acc };
      return;
    }
    for (const value of candidates[names[i]]) yield* walk(i + 1, { ...acc, [names[i]]: value });
  }
  yield* walk(0, {});
}

export interface Working {
  values: Record<string, unknown>;
  outcome: Outcome;
}

/**
 * For each function, arguments that work for `orgId`'s owner (every uuid argument tried with each
 * of the organization's rows of its table, and a random id), or the first failure when none do.
 */
export async function workingArguments(owner: Tenant['owner'], orgId: string, functions: DbFunction[]): Promise<Map<string, Working>> {
  const found = new Map<string, Working>();
  await asVisitor(sessionOf(owner, orgId), async (c) => {
    for (const fn of functions) {
      const candidates: Record<string, unknown[]> = {};
      for (const arg of fn.args) {
        const table = fn.argTables[arg.name];
        candidates[arg.name] = table ? (await rowIds(table, orgId)).concat(randomUUID()) : [await plainValue(arg)];
      }
      let first: Working | undefined;
      for (const values of combinations(candidates)) {
        const outcome = await callIn(c, fn, values);
        first ??= { values, outcome };
        if (!outcome.code) {
          first = { values, outcome };
          break;
        }
      }
      found.set(fn.signature, first!);
    }
  });
  return found;
}

/**
 * Rows in the states the lifecycle functions start from, so that most calls work for the owner: a
 * sent proposal, a draft and a sent contract, billable time, an approved bill, and an enabled
 * endpoint (for an event nothing in the tests commits) with a failed delivery.
 */
export async function lifecycleStates(t: Tenant): Promise<void> {
  const hook = await commitAs(sessionOf(t.owner, t.orgId), async (c) => {
    const sentProposal = async () => {
      const p = await one<{ id: string }>(c, `insert into app_public.proposals (client_company_id, title) values ($1, 'Phase 2') returning id`, [t.clientId]);
      await c.query(`insert into app_public.proposal_line_items (proposal_id, description, unit_price) values ($1, 'More', 900)`, [p.id]);
      await c.query('select app_public.send_proposal($1)', [p.id]);
      return p.id;
    };
    await sentProposal();
    const sentContract = await one<{ id: string }>(c, 'select id from app_public.accept_proposal($1)', [await sentProposal()]);
    await c.query('select app_public.send_contract($1)', [sentContract.id]);
    await c.query('select app_public.accept_proposal($1)', [await sentProposal()]);
    await c.query(
      `insert into app_public.time_entries (engagement_id, member_id, work_date, minutes) select $1, m.id, '2026-01-14', 60 from app_public.organization_members m where m.user_id = $2`,
      [t.engagementId, t.owner.userId],
    );
    // Approved (only approved time is invoiced): a week of its own, the fixture's is approved.
    await approveTime(c, t.engagementId);
    const bill = await one<{ id: string }>(c, `insert into app_public.bills (vendor_id, reference, amount, due_on) select id, 'SP-2', 120, '2030-01-01' from app_public.vendors limit 1 returning id`);
    await c.query('select app_public.approve_bill($1)', [bill.id]);
    return one<{ endpoint_id: string }>(c, `select endpoint_id from app_public.create_webhook_endpoint('https://hooks.example.test/states', array['bill.paid'])`);
  });
  await pool('owner').query(
    `insert into app_public.webhook_deliveries (organization_id, endpoint_id, event_type, payload, status) values ($1, $2, 'ping', '{"type": "ping"}', 'failed')`,
    [t.orgId, hook.endpoint_id],
  );
}
