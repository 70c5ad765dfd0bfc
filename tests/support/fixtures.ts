// Two tenants with at least one row in every tenant table, made through the same functions the
// API uses. A new tenant table must get rows here: the isolation matrix fails for a table
// without fixture rows in both organizations.
import { addMember, asVisitor, createOrganization, sessionOf, signUp, unique, type User } from './db.ts';

export interface Tenant {
  orgId: string;
  owner: User;
  admin: User;
  viewer: User;
}

async function seedTenant(label: string): Promise<Tenant> {
  const owner = await signUp(`${label}-owner`);
  const orgId = await createOrganization(owner, label);
  const admin = await addMember(orgId, owner, 'admin', `${label}-admin`);
  const viewer = await addMember(orgId, owner, 'viewer', `${label}-viewer`);
  await asVisitor(
    sessionOf(owner, orgId),
    async (c) => {
      // client_companies
      await c.query('insert into app_public.client_companies (name, website) values ($1, $2), ($3, null)', [unique('Client'), 'https://example.com', unique('Client')]);
      // invitations (pending)
      await c.query('select app_public.invite_member($1, $2)', [`${unique('invitee')}@example.com`, 'member']);
    },
    { commit: true },
  );
  return { orgId, owner, admin, viewer };
}

export async function twoTenants(): Promise<{ a: Tenant; b: Tenant }> {
  const [a, b] = await Promise.all([seedTenant('alpha'), seedTenant('beta')]);
  return { a, b };
}
