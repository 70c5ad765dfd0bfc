// The schema's rules, checked in the catalog: every query in sql/checks/ must return no rows.
// Each check is also shown to fail: a deliberately broken table (created and rolled back in one
// transaction, as the owner) must be reported by it.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, test } from '@jest/globals';
import { SQL_DIR } from '../src/paths.ts';
import { closePools, pool, roleName } from './support/db.ts';

const CHECKS_DIR = path.join(SQL_DIR, 'checks');
const checkFiles = fs.readdirSync(CHECKS_DIR).filter((f) => f.endsWith('.sql')).sort();
const readCheck = (file: string) => fs.readFileSync(path.join(CHECKS_DIR, file), 'utf8');

afterAll(closePools);

async function runCheck(file: string, breakIt?: string): Promise<Record<string, unknown>[]> {
  // The probe's DDL locks app_public.organizations and client_companies (its foreign keys) while
  // other test files write to them: PostgreSQL may end it as one side of a deadlock, and then it
  // runs again, as any client would (the check itself is not what deadlocked).
  for (let attempt = 1; ; attempt++) {
    const client = await pool('owner').connect();
    try {
      await client.query('begin');
      await client.query(`select set_config('atrium.visitor', $1, true)`, [roleName('visitor')]);
      if (breakIt) await client.query(breakIt);
      const { rows } = await client.query(readCheck(file));
      return rows;
    } catch (error) {
      if ((error as { code?: string }).code !== '40P01' || attempt >= 5) throw error;
    } finally {
      await client.query('rollback');
      client.release();
    }
  }
}

describe('every catalog check holds on the migrated schema', () => {
  test('there are checks, and each is documented in sql/checks/README.md', () => {
    const readme = fs.readFileSync(path.join(CHECKS_DIR, 'README.md'), 'utf8');
    expect(checkFiles.length).toBeGreaterThanOrEqual(11);
    for (const file of checkFiles) expect(readme).toContain(file);
  });

  test.each(checkFiles)('%s returns no rows', async (file) => {
    expect(await runCheck(file)).toEqual([]);
  });
});

// A tenant table that follows every rule, to break one rule at a time.
const GOOD_TABLE = `
  create table app_public.check_probe (
    organization_id uuid not null references app_public.organizations,
    id uuid not null default gen_random_uuid(),
    client_company_id uuid,
    contact_email app_public.email_address,
    fee app_public.money_amount,
    review_on app_public.business_date,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (organization_id, id),
    foreign key (organization_id, client_company_id) references app_public.client_companies
  );
  create index check_probe_organization_id_client_company_id_idx on app_public.check_probe (organization_id, client_company_id);
  call app_private.make_tenant_table('app_public.check_probe', 'clients');
  call app_private.classify_columns('app_public.check_probe', '{"contact_email": "email"}');
  call app_private.declare_record_retention('app_public.check_probe', false, 'a probe');
`;

describe('each check reports a table that breaks its rule', () => {
  test('the probe table itself passes every check', async () => {
    for (const file of checkFiles) expect({ file, rows: await runCheck(file, GOOD_TABLE) }).toEqual({ file, rows: [] });
  });

  const broken: Array<[string, string, string]> = [
    ['rls_forced.sql', 'RLS not forced', `${GOOD_TABLE} alter table app_public.check_probe no force row level security;`],
    ['rls_forced.sql', 'RLS disabled on a private table', 'create table app_private.check_probe (id int primary key);'],
    ['tenant_tables_have_organization_id.sql', 'no organization_id', 'create table app_public.check_probe (id uuid primary key); alter table app_public.check_probe enable row level security, force row level security;'],
    ['tenant_primary_keys.sql', 'primary key (id) only', 'create table app_public.check_probe (organization_id uuid not null, id uuid primary key);'],
    ['distributable_by_organization.sql', 'a unique key of a tenant table without organization_id', `${GOOD_TABLE} create unique index check_probe_email_key on app_public.check_probe (contact_email);`],
    // (A test database's users table is small: the limit is lowered to show the rule fails.)
    ['distributable_by_organization.sql', 'a reference table over the size limit', `set local atrium.reference_table_max_bytes = '1';`],
    ['distributable_by_organization.sql', 'a global table referring to a tenant table', `${GOOD_TABLE} create table app_private.check_probe_global (id uuid primary key, organization_id_ref uuid, probe_id uuid, foreign key (organization_id_ref, probe_id) references app_public.check_probe);`],
    [
      'composite_tenant_foreign_keys.sql',
      'a tenant foreign key on id alone',
      `create table app_public.check_probe (organization_id uuid not null, id uuid not null, other_id uuid, primary key (organization_id, id));
       create unique index check_probe_other on app_public.client_companies (id);
       alter table app_public.check_probe add foreign key (other_id) references app_public.client_companies (id);`,
    ],
    ['foreign_keys_indexed.sql', 'an unindexed foreign key', `${GOOD_TABLE} drop index app_public.check_probe_organization_id_client_company_id_idx;`],
    [
      'foreign_keys_indexed.sql',
      'a foreign key whose only index is partial on another condition',
      `${GOOD_TABLE} drop index app_public.check_probe_organization_id_client_company_id_idx;
       create index check_probe_live_client_idx on app_public.check_probe (organization_id, client_company_id) where contact_email is not null;`,
    ],
    [
      'foreign_keys_indexed.sql',
      'a foreign key to users not led by organization_id',
      `${GOOD_TABLE} alter table app_public.check_probe add column user_id uuid references app_public.users;
       create index check_probe_user_id_idx on app_public.check_probe (user_id);`,
    ],
    ['policies_per_command_to_visitor.sql', 'a FOR ALL policy', `${GOOD_TABLE} create policy everything on app_public.check_probe for all to public using (true);`],
    [
      'policies_cache_helpers.sql',
      'a helper called per row',
      `${GOOD_TABLE} create policy per_row on app_public.check_probe for select to ${'${visitor}'} using (organization_id = app_public.current_org_id());`,
    ],
    [
      'audited_tables_have_read_rule.sql',
      'an audited table without a read rule',
      `${GOOD_TABLE} delete from app_private.activity_read_rules where table_name = 'check_probe';`,
    ],
    ['personal_data_classified.sql', 'an unclassified text column', `${GOOD_TABLE} alter table app_public.check_probe add column notes text;`],
    ['personal_data_classified.sql', 'an unclassified jsonb column', `${GOOD_TABLE} alter table app_public.check_probe add column details jsonb;`],
    ['personal_data_classified.sql', 'a classification of a column that does not exist', `${GOOD_TABLE} insert into app_private.data_columns values ('app_public', 'check_probe', 'gone', 'none', 'keep');`],
    ['record_retention_declared.sql', 'an undeclared table with a money column', `${GOOD_TABLE} delete from app_private.record_retention_classes where table_name = 'check_probe';`],
    ['record_retention_declared.sql', 'a declaration of a table that does not exist', `${GOOD_TABLE} insert into app_private.record_retention_classes values ('check_probe_gone', true, 'test');`],
    [
      'audit_triggers_carry_classification.sql',
      'a classification changed around classify_columns',
      `${GOOD_TABLE} update app_private.data_columns set in_log = 'omit' where table_name = 'check_probe' and column_name = 'contact_email';`,
    ],
    [
      'audit_triggers_carry_classification.sql',
      'an audit trigger attached by hand',
      `${GOOD_TABLE} create trigger check_probe_by_hand after insert on app_public.check_probe referencing new table as new_rows for each statement execute function app_private.tg__audit('organization_id');`,
    ],
    ['tenant_tables_audited.sql', 'a missing audit trigger', `${GOOD_TABLE} drop trigger tg_check_probe__audit_update on app_public.check_probe;`],
    ['tenant_tables_require_organization.sql', 'no NO_ORGANIZATION trigger', `${GOOD_TABLE} drop trigger tg_check_probe__require_organization on app_public.check_probe;`],
    [
      'security_definer_search_path.sql',
      'a definer function without search_path',
      "create function app_private.check_probe() returns int language sql security definer as 'select 1'; revoke all on function app_private.check_probe() from public;",
    ],
    ['no_public_execute.sql', 'a function executable by PUBLIC', "create function app_public.check_probe() returns int language sql as 'select 1'; grant execute on function app_public.check_probe() to public;"],
    ['no_secrets_in_app_public.sql', 'a password hash in app_public', `${GOOD_TABLE} alter table app_public.check_probe add column password_hash text;`],
    ['value_columns_use_domains.sql', 'a money column of plain numeric', `${GOOD_TABLE} alter table app_public.check_probe add column price numeric(14,2);`],
    ['value_columns_use_domains.sql', 'an amount in a float', `${GOOD_TABLE} alter table app_public.check_probe add column amount double precision;`],
    ['value_columns_use_domains.sql', 'a number in a domain without bounds', `${GOOD_TABLE} create domain app_public.check_probe_number as numeric; alter table app_public.check_probe add column price app_public.check_probe_number;`],
    ['value_columns_use_domains.sql', 'a date column outside business_date', `${GOOD_TABLE} alter table app_public.check_probe add column due_on date;`],
    ['value_columns_use_domains.sql', 'a timestamp without time zone', `${GOOD_TABLE} alter table app_public.check_probe add column sent_at timestamp;`],
    [
      'value_columns_use_domains.sql',
      'a timestamptz the visitor writes',
      `${GOOD_TABLE} alter table app_public.check_probe add column starts_at timestamptz; call app_private.grant_tenant_access('app_public.check_probe', false);`,
    ],
    [
      'value_columns_use_domains.sql',
      'an allowed timestamp name the visitor writes',
      `${GOOD_TABLE} alter table app_public.check_probe add column sent_at timestamptz; call app_private.grant_tenant_access('app_public.check_probe', false);`,
    ],
    ['value_columns_use_domains.sql', 'a listed plain number whose check is gone', 'alter table app_public.invoices drop constraint invoices_amount_credited_range;'],
    ['value_columns_use_domains.sql', 'a listed plain number the visitor writes', `grant update (amount_credited) on app_public.invoices to ${'${visitor}'};`],
    ['value_columns_use_domains.sql', 'a timestamptz not set by the database', `${GOOD_TABLE} alter table app_public.check_probe add column remind_at timestamptz;`],
    ['value_columns_use_domains.sql', 'an email column of plain text', `${GOOD_TABLE} alter table app_public.check_probe add column billing_email text;`],
    ['email_columns_normalized.sql', 'an email column without the normalizer', `${GOOD_TABLE} alter table app_public.check_probe add column email app_public.email_address;`],
    [
      'email_columns_normalized.sql',
      'a normalizer that leaves a column out',
      `${GOOD_TABLE} alter table app_public.check_probe add column email app_public.email_address;
       call app_private.attach_email_normalizer('app_public.check_probe');
       alter table app_public.check_probe add column other_email app_public.email_address;`,
    ],
    [
      'stored_values_keep_rules.sql',
      'NaN, an infinite date and an address in capitals, stored where no domain stops them',
      `create table app_public.check_probe (price numeric, due_on date, contact_email text);
       insert into app_public.check_probe values ('NaN', 'infinity', ' Ada@Example.COM ');`,
    ],
    ['domain_rules_catalogued.sql', 'a domain rule without a message', `create domain app_public.check_probe_number as numeric check (value > 0);`],
    ['domain_rules_catalogued.sql', 'a message for a rule that does not exist', `insert into app_private.domain_rules values ('app_public.quantity', 'check_probe', 'INVALID_VALUE', 'x');`],
  ];

  test('every check file has at least one breaking case', () => {
    expect(new Set(broken.map(([file]) => file))).toEqual(new Set(checkFiles));
  });

  test.each(broken)('%s reports %s', async (file, _what, sql) => {
    const rows = await runCheck(file, sql.replaceAll('${visitor}', roleName('visitor')));
    expect(rows.length).toBeGreaterThan(0);
  });
});
