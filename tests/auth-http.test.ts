// Sign-up, sign-in, tokens, organizations, invitations and roles over real HTTP against the
// running GraphQL server. Also the end-to-end proof: two tenants' tokens each see only their
// own rows.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { SignJWT } from 'jose';
import type { Atrium } from '../src/index.ts';
import { AUDIENCE, ISSUER } from '../src/auth/tokens.ts';
import { closePools, pool, unique } from './support/db.ts';
import { AUTH_PAYLOAD_FIELDS, errorCode, gql, registerAndConfirm, startTestApp } from './support/app.ts';

let app: Atrium;
let url: string;

beforeAll(async () => {
  app = await startTestApp();
  url = app.url!;
}, 60_000);
afterAll(async () => {
  await app?.stop();
  await closePools();
});

const AUTH_FIELDS = AUTH_PAYLOAD_FIELDS;

interface Auth {
  accessToken: string;
  refreshToken: string | null;
  userId: string;
  organizationId: string | null;
}

/** A new account, signed up over HTTP (register, the emailed token, confirmRegistration). */
async function register(label = 'user', password = 'correct horse battery'): Promise<Auth & { email: string }> {
  return registerAndConfirm(url, { email: `${unique(label)}@example.com`, password, name: `Test ${label}` });
}

async function createOrg(token: string, name = unique('Org')): Promise<string> {
  const res = await gql<{ createOrganization: { organization: { rowId: string } } }>(
    url,
    `mutation($name: String!) { createOrganization(input: { name: $name }) { organization { rowId } } }`,
    { name },
    token,
  );
  expect(res.errors).toBeUndefined();
  return res.data!.createOrganization.organization.rowId;
}

async function switchTo(token: string, organizationId: string | null): Promise<Auth> {
  const res = await gql<{ switchOrganization: Auth }>(
    url,
    `mutation($id: UUID) { switchOrganization(input: { organizationId: $id }) { ${AUTH_FIELDS} } }`,
    { id: organizationId },
    token,
  );
  expect(res.errors).toBeUndefined();
  return res.data!.switchOrganization;
}

async function ownerOfNewOrg(label: string) {
  const user = await register(label);
  const orgId = await createOrg(user.accessToken);
  const scoped = await switchTo(user.accessToken, orgId);
  return { ...user, orgId, token: scoped.accessToken };
}

const addClient = (token: string, name: string) =>
  gql<{ createClientCompany: { clientCompany: { rowId: string; name: string; organizationId: string } } }>(
    url,
    `mutation($name: String!) { createClientCompany(input: { clientCompany: { name: $name } }) { clientCompany { rowId name organizationId } } }`,
    { name },
    token,
  );

const listClients = async (token: string) => {
  const res = await gql<{ clientCompanies: { nodes: Array<{ name: string; organizationId: string }> } }>(url, '{ clientCompanies { nodes { name organizationId } } }', {}, token);
  expect(res.errors).toBeUndefined();
  return res.data!.clientCompanies.nodes;
};

describe('health', () => {
  test('/healthz answers while the process is up; /readyz checks the database and migrations', async () => {
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', checks: { database: 'ok', migrations: 'current' } });
  });
  test('unknown paths get a JSON 404', async () => {
    const res = await fetch(`${url}/nope`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ errors: [{ extensions: { code: 'NOT_FOUND' } }] });
  });
});

describe('register and login', () => {
  test('register, then confirmRegistration with the emailed token, returns a working access token and a refresh token', async () => {
    const user = await register('reg');
    expect(user.refreshToken).toEqual(expect.any(String));
    const me = await gql<{ viewer: { rowId: string; email: string } }>(url, '{ viewer { rowId email } currentUserId }', {}, user.accessToken);
    expect(me.data?.viewer).toEqual({ rowId: user.userId, email: user.email });
  });

  test('a weak password, a bad email or a bad name fails with a stable code, whether or not the address has an account', async () => {
    const user = await register('dup');
    const mutation = 'mutation($input: RegisterInput!) { register(input: $input) { requested } }';
    for (const email of [user.email, `${unique('w')}@example.com`]) {
      expect(errorCode(await gql(url, mutation, { input: { email, password: 'short', name: 'X' } }))).toBe('WEAK_PASSWORD');
      expect(errorCode(await gql(url, mutation, { input: { email, password: 'long enough pw', name: '  ' } }))).toBe('INVALID_VALUE');
    }
    expect(errorCode(await gql(url, mutation, { input: { email: 'not-an-email', password: 'long enough pw', name: 'X' } }))).toBe('INVALID_EMAIL');
  });

  test('login with the right password works; a wrong password and an unknown email fail alike', async () => {
    const user = await register('login');
    const mutation = `mutation($input: LoginInput!) { login(input: $input) { ${AUTH_FIELDS} } }`;
    const ok = await gql<{ login: Auth }>(url, mutation, { input: { email: user.email, password: 'correct horse battery' } });
    expect(ok.data?.login.userId).toBe(user.userId);
    const wrong = await gql(url, mutation, { input: { email: user.email, password: 'wrong password' } });
    const unknown = await gql(url, mutation, { input: { email: `${unique('nobody')}@example.com`, password: 'wrong password' } });
    expect(errorCode(wrong)).toBe('INVALID_CREDENTIALS');
    expect(errorCode(unknown)).toBe('INVALID_CREDENTIALS');
    expect(wrong.errors![0].message).toBe(unknown.errors![0].message);
  });

  test('after 5 failed sign-ins from one client, that client waits before its next attempt (TOO_MANY_ATTEMPTS, HTTP 429, with the seconds), even with the right password; a success clears the count; other accounts and unknown addresses alike', async () => {
    const [user, other] = await Promise.all([register('throttled'), register('bystander')]);
    const mutation = `mutation($input: LoginInput!) { login(input: $input) { ${AUTH_FIELDS} } }`;
    const login = (email: string, password: string) => gql<{ login: Auth }>(url, mutation, { input: { email, password } });
    for (let i = 0; i < 4; i++) expect(errorCode(await login(user.email, `wrong ${i}`))).toBe('INVALID_CREDENTIALS');
    // Four failures: no wait yet; a success clears the count.
    expect((await login(user.email, 'correct horse battery')).data?.login.userId).toBe(user.userId);
    for (let i = 0; i < 5; i++) expect(errorCode(await login(user.email.toUpperCase(), `wrong ${i}`))).toBe('INVALID_CREDENTIALS');
    const throttled = await login(user.email, 'correct horse battery');
    expect(errorCode(throttled)).toBe('TOO_MANY_ATTEMPTS');
    const extensions = throttled.errors![0].extensions as { httpStatus: number; retryAfterSeconds: number };
    expect(extensions.httpStatus).toBe(429);
    expect(extensions.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(extensions.retryAfterSeconds).toBeLessThanOrEqual(5);
    expect(throttled.errors![0].message).toMatch(new RegExp(`try again in ${extensions.retryAfterSeconds} seconds?`));
    expect((await login(other.email, 'correct horse battery')).data?.login.userId).toBe(other.userId);
    // Unknown addresses are throttled alike, with the same answers (no difference to probe for).
    const nobody = `${unique('nobody')}@example.com`;
    for (let i = 0; i < 5; i++) expect(errorCode(await login(nobody, 'x'))).toBe('INVALID_CREDENTIALS');
    const unknown = await login(nobody, 'x');
    expect(errorCode(unknown)).toBe('TOO_MANY_ATTEMPTS');
    expect(unknown.errors![0].message.replace(/\d+ seconds?/, 'N')).toBe(throttled.errors![0].message.replace(/\d+ seconds?/, 'N'));
    // When the wait has passed, the right password works again.
    await pool('owner').query(`update app_private.login_throttle set next_attempt_at = now() - interval '1 second' where email = $1`, [user.email]);
    expect((await login(user.email, 'correct horse battery')).data?.login.userId).toBe(user.userId);
  });
});

describe('sign-in throttling per client', () => {
  // Behind a proxy on loopback (TRUST_PROXY), X-Forwarded-For names the client: one test server
  // then sees as many clients as the test likes.
  let proxied: Atrium;
  beforeAll(async () => {
    proxied = await startTestApp({ env: { TRUST_PROXY: 'loopback' } });
  }, 60_000);
  afterAll(async () => {
    await proxied?.stop();
  });

  const loginFrom = (client: string, email: string, password: string) =>
    fetch(`${proxied.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': client },
      body: JSON.stringify({ query: `mutation($input: LoginInput!) { login(input: $input) { ${AUTH_FIELDS} } }`, variables: { input: { email, password } } }),
    }).then(async (r) => ({ status: r.status, ...((await r.json()) as { data?: { login: Auth }; errors?: Array<{ message: string; extensions?: Record<string, any> }> }) }));
  // (In milliseconds: login() reads clock_timestamp() once per column, so on a busy machine the two
  // stamps of one failure can be a microsecond apart.)
  const waitOf = async (email: string, client: string) =>
    (await pool('owner').query<{ failures: number; wait: number }>(
      'select failures, round(extract(epoch from next_attempt_at - last_failed_at), 3)::float8 as wait from app_private.login_throttle where email = $1 and client = $2',
      [email, client],
    )).rows[0];

  test("a stranger's failed sign-ins from another address do not stop the victim signing in", async () => {
    const victim = await register('victim');
    const stranger = '203.0.113.66';
    const codes = [];
    for (let i = 0; i < 12; i++) codes.push((await loginFrom(stranger, victim.email, `guess ${i}`)).errors?.[0].extensions?.code);
    expect(codes.slice(0, 5)).toEqual(Array(5).fill('INVALID_CREDENTIALS'));
    expect(new Set(codes.slice(5))).toEqual(new Set(['TOO_MANY_ATTEMPTS']));
    expect(await waitOf(victim.email, stranger)).toMatchObject({ failures: 5 });
    // The victim, at home: not slowed, neither for a typo nor for the right password.
    expect((await loginFrom('198.51.100.7', victim.email, 'a typo')).errors?.[0].extensions?.code).toBe('INVALID_CREDENTIALS');
    const signedIn = await loginFrom('198.51.100.7', victim.email, 'correct horse battery');
    expect(signedIn.errors).toBeUndefined();
    expect(signedIn.data?.login.userId).toBe(victim.userId);
    // ...which clears only the victim's own record: the stranger still waits.
    expect(await waitOf(victim.email, '198.51.100.7')).toBeUndefined();
    expect((await loginFrom(stranger, victim.email, 'correct horse battery')).errors?.[0].extensions?.code).toBe('TOO_MANY_ATTEMPTS');
  });

  test('the wait grows with each further failure: 5 s after the fifth, doubling, at most 15 minutes', async () => {
    const user = await register('growing');
    const client = '192.0.2.44';
    for (let i = 0; i < 4; i++) await loginFrom(client, user.email, `wrong ${i}`);
    expect(await waitOf(user.email, client)).toEqual({ failures: 4, wait: 0 });
    const waits: number[] = [];
    const answered: number[] = [];
    for (let failures = 5; failures <= 8; failures++) {
      expect((await loginFrom(client, user.email, `wrong ${failures}`)).errors?.[0].extensions?.code).toBe('INVALID_CREDENTIALS');
      const row = await waitOf(user.email, client);
      expect(row.failures).toBe(failures);
      waits.push(row.wait);
      const refused = await loginFrom(client, user.email, 'correct horse battery');
      expect(refused.errors?.[0].extensions?.code).toBe('TOO_MANY_ATTEMPTS');
      answered.push(refused.errors![0].extensions!.retryAfterSeconds);
      // Time passes (the wait is over) without waiting for it.
      await pool('owner').query(`update app_private.login_throttle set next_attempt_at = now() - interval '1 second' where email = $1 and client = $2`, [user.email, client]);
    }
    expect(waits).toEqual([5, 10, 20, 40]);
    answered.forEach((seconds, i) => {
      expect(seconds).toBeGreaterThan(waits[i] / 2);
      expect(seconds).toBeLessThanOrEqual(waits[i]);
    });
    await pool('owner').query(`update app_private.login_throttle set failures = 40 where email = $1 and client = $2`, [user.email, client]);
    await loginFrom(client, user.email, 'wrong again');
    expect(await waitOf(user.email, client)).toEqual({ failures: 41, wait: 15 * 60 });
  });

  test('concurrent attempts of one client queue: once a failure earns a wait, the attempts in flight are not checked', async () => {
    const user = await register('concurrent');
    const client = '192.0.2.45';
    for (let i = 0; i < 4; i++) await loginFrom(client, user.email, `wrong ${i}`);
    // The fifth failure earns a wait; the attempts sent with it must not each get a password check.
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => loginFrom(client, user.email, `parallel ${i}`)));
    const codes = answers.map((a) => a.errors?.[0].extensions?.code).sort();
    expect(codes).toEqual(['INVALID_CREDENTIALS', ...Array(5).fill('TOO_MANY_ATTEMPTS')]);
    expect(await waitOf(user.email, client)).toMatchObject({ failures: 5 });
  });

  test('without TRUST_PROXY a client-supplied X-Forwarded-For is ignored: the socket address is the client', async () => {
    const user = await register('spoofer');
    const mutation = `mutation($input: LoginInput!) { login(input: $input) { ${AUTH_FIELDS} } }`;
    for (let i = 0; i < 5; i++) {
      await fetch(`${url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': `198.51.100.${i + 1}` },
        body: JSON.stringify({ query: mutation, variables: { input: { email: user.email, password: `wrong ${i}` } } }),
      });
    }
    const { rows } = await pool('owner').query<{ client: string; failures: number }>('select client, failures from app_private.login_throttle where email = $1', [user.email]);
    expect(rows).toEqual([{ client: '127.0.0.1', failures: 5 }]);
  });
});

describe('tokens', () => {
  const secret = () => new TextEncoder().encode(process.env.JWT_SECRET!);

  test('no token: anonymous, sees nothing', async () => {
    const res = await gql(url, '{ viewer { rowId } currentOrgId clientCompanies { totalCount } }');
    expect(res.status).toBe(200);
    expect(res.data).toEqual({ viewer: null, currentOrgId: null, clientCompanies: { totalCount: 0 } });
  });

  test('an expired token is refused with 401 TOKEN_EXPIRED', async () => {
    const user = await register('expired');
    const old = Math.floor(Date.now() / 1000) - 3600;
    const token = await new SignJWT({ sid: crypto.randomUUID(), org: null })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(user.userId)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt(old - 900)
      .setExpirationTime(old)
      .sign(secret());
    const res = await gql(url, '{ viewer { rowId } }', {}, token);
    expect(res.status).toBe(401);
    expect(res.errors?.[0].extensions?.code).toBe('TOKEN_EXPIRED');
  });

  test('a tampered token, a token signed with another key, and a malformed header are refused with 401 INVALID_TOKEN', async () => {
    const user = await register('tamper');
    const [header, payload, signature] = user.accessToken.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    const forged = Buffer.from(JSON.stringify({ ...claims, org: crypto.randomUUID() })).toString('base64url');
    const otherKey = await new SignJWT({ sid: claims.sid, org: null })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(user.userId)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode('another secret that is at least thirty-two chars'));
    for (const token of [`${header}.${forged}.${signature}`, otherKey, `${header}.${payload}.${signature.slice(0, -4)}AAAA`]) {
      const res = await gql(url, '{ viewer { rowId } }', {}, token);
      expect(res.status).toBe(401);
      expect(res.errors?.[0].extensions?.code).toBe('INVALID_TOKEN');
    }
    const malformed = await fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Basic abc' }, body: '{"query":"{__typename}"}' });
    expect(malformed.status).toBe(401);
  });

  test('refresh rotates the refresh token; reusing an old one revokes the whole session', async () => {
    const user = await register('refresh');
    const mutation = `mutation($t: String!) { refresh(input: { refreshToken: $t }) { ${AUTH_FIELDS} } }`;
    const first = await gql<{ refresh: Auth }>(url, mutation, { t: user.refreshToken });
    expect(first.errors).toBeUndefined();
    const rotated = first.data!.refresh;
    expect(rotated.refreshToken).not.toBe(user.refreshToken);
    expect((await gql<{ viewer: { rowId: string } }>(url, '{ viewer { rowId } }', {}, rotated.accessToken)).data?.viewer?.rowId).toBe(user.userId);

    // The first refresh token again: theft is assumed, the session ends.
    expect(errorCode(await gql(url, mutation, { t: user.refreshToken }))).toBe('INVALID_REFRESH_TOKEN');
    expect(errorCode(await gql(url, mutation, { t: rotated.refreshToken }))).toBe('INVALID_REFRESH_TOKEN');
    expect((await gql(url, '{ viewer { rowId } }', {}, rotated.accessToken)).data?.viewer).toBeNull();
    expect(errorCode(await gql(url, mutation, { t: 'not-a-token' }))).toBe('INVALID_REFRESH_TOKEN');
  });

  test('logout ends the session: its access token stops working at once, though not yet expired', async () => {
    const owner = await ownerOfNewOrg('logout');
    expect((await addClient(owner.token, 'Before logout')).errors).toBeUndefined();
    const out = await gql<{ logout: { loggedOut: boolean } }>(url, 'mutation { logout { loggedOut } }', {}, owner.token);
    expect(out.data?.logout.loggedOut).toBe(true);
    const after = await gql(url, '{ viewer { rowId } currentOrgId clientCompanies { totalCount } }', {}, owner.token);
    expect(after.data).toEqual({ viewer: null, currentOrgId: null, clientCompanies: { totalCount: 0 } });
    // The session is gone: adding a record asks to sign in (sql/functions/require_organization.sql).
    expect(errorCode(await addClient(owner.token, 'After logout'))).toBe('UNAUTHENTICATED');
    expect(errorCode(await gql(url, `mutation($t: String!) { refresh(input: { refreshToken: $t }) { accessToken } }`, { t: owner.refreshToken }))).toBe('INVALID_REFRESH_TOKEN');
  });
});

describe('organizations', () => {
  test('two tenants, each with its own token, each see only their own rows', async () => {
    const alpha = await ownerOfNewOrg('alpha');
    const beta = await ownerOfNewOrg('beta');
    const a = await addClient(alpha.token, 'Alpha client');
    expect(a.errors).toBeUndefined();
    expect(a.data?.createClientCompany.clientCompany.organizationId).toBe(alpha.orgId);
    expect((await addClient(beta.token, 'Beta client')).errors).toBeUndefined();

    expect(await listClients(alpha.token)).toEqual([{ name: 'Alpha client', organizationId: alpha.orgId }]);
    expect(await listClients(beta.token)).toEqual([{ name: 'Beta client', organizationId: beta.orgId }]);

    // Beta asks for Alpha's row by its keys: nothing.
    const theirs = await gql(url, 'query($o: UUID!, $id: UUID!) { clientCompany(organizationId: $o, rowId: $id) { name } }', { o: alpha.orgId, id: a.data!.createClientCompany.clientCompany.rowId }, beta.token);
    expect(theirs.data).toEqual({ clientCompany: null });
    // Beta tries to write into Alpha: the API has no way to name another organization (rows go
    // to the token's organization); the database refusal behind it is in the isolation matrix.
    const intrude = await gql(
      url,
      'mutation($o: UUID!) { createClientCompany(input: { clientCompany: { name: "Intruder", organizationId: $o } }) { clientCompany { rowId } } }',
      { o: alpha.orgId },
      beta.token,
    );
    expect(intrude.errors?.[0].message).toMatch(/organizationId/);
    expect(intrude.data).toBeUndefined();
    expect(await listClients(alpha.token)).toHaveLength(1);
  });

  test('a token without an organization sees no tenant rows; myOrganizations lists yours', async () => {
    const owner = await ownerOfNewOrg('noorg');
    await addClient(owner.token, 'Hidden without org');
    const unscoped = await switchTo(owner.token, null);
    expect(unscoped.organizationId).toBeNull();
    expect(await listClients(unscoped.accessToken)).toEqual([]);
    const mine = await gql<{ myOrganizations: { nodes: Array<{ rowId: string }> } }>(url, '{ myOrganizations { nodes { rowId } } }', {}, unscoped.accessToken);
    expect(mine.data?.myOrganizations.nodes).toEqual([{ rowId: owner.orgId }]);
  });

  test('switching to an organization you are not in fails with NOT_FOUND', async () => {
    const alpha = await ownerOfNewOrg('sw-alpha');
    const beta = await ownerOfNewOrg('sw-beta');
    const res = await gql(url, 'mutation($id: UUID) { switchOrganization(input: { organizationId: $id }) { accessToken } }', { id: alpha.orgId }, beta.token);
    expect(errorCode(res)).toBe('NOT_FOUND');
  });

  test('login straight into an organization', async () => {
    const owner = await ownerOfNewOrg('direct');
    const res = await gql<{ login: Auth }>(url, `mutation($input: LoginInput!) { login(input: $input) { ${AUTH_FIELDS} } }`, {
      input: { email: owner.email, password: 'correct horse battery', organizationId: owner.orgId },
    });
    expect(res.data?.login.organizationId).toBe(owner.orgId);
  });
});

describe('invitations and roles', () => {
  const invite = (token: string, email: string, role: string) =>
    gql<{ inviteMember: { invitationToken: { token: string; invitationId: string } } }>(
      url,
      'mutation($email: String!, $role: MemberRole!) { inviteMember(input: { email: $email, role: $role }) { invitationToken { token invitationId } } }',
      { email, role },
      token,
    );
  const accept = (token: string, invitation: string) =>
    gql<{ acceptInvitation: { organizationMember: { role: string; organizationId: string } } }>(
      url,
      'mutation($t: String!) { acceptInvitation(input: { token: $t }) { organizationMember { role organizationId } } }',
      { t: invitation },
      token,
    );
  const memberships = async (token: string) =>
    (await gql<{ organizationMembers: { nodes: Array<{ rowId: string; role: string; userId: string }> } }>(url, '{ organizationMembers { nodes { rowId role userId } } }', {}, token)).data!.organizationMembers.nodes;
  const setRole = (token: string, orgId: string, memberId: string, role: string) =>
    gql(
      url,
      'mutation($o: UUID!, $id: UUID!, $role: MemberRole!) { updateOrganizationMember(input: { organizationId: $o, rowId: $id, patch: { role: $role } }) { organizationMember { role } } }',
      { o: orgId, id: memberId, role },
      token,
    );

  test('an invited user signs up with the invited email, accepts, and works in the organization', async () => {
    const owner = await ownerOfNewOrg('inviter');
    await addClient(owner.token, 'Shared client');
    const email = `${unique('invitee')}@example.com`;
    const inv = await invite(owner.token, email, 'member');
    expect(inv.errors).toBeUndefined();

    const stranger = await register('stranger');
    expect(errorCode(await accept(stranger.accessToken, inv.data!.inviteMember.invitationToken.token))).toBe('INVITATION_INVALID');

    const invitee = await registerAndConfirm(url, { email, name: 'Invitee' });
    const accepted = await accept(invitee.accessToken, inv.data!.inviteMember.invitationToken.token);
    expect(accepted.data?.acceptInvitation.organizationMember).toEqual({ role: 'member', organizationId: owner.orgId });
    const scoped = await switchTo(invitee.accessToken, owner.orgId);
    expect(await listClients(scoped.accessToken)).toEqual([{ name: 'Shared client', organizationId: owner.orgId }]);
    // Used once only.
    expect(errorCode(await accept(invitee.accessToken, inv.data!.inviteMember.invitationToken.token))).toBe('INVITATION_INVALID');
  });

  test('viewers read but cannot write; members cannot invite; admins cannot touch owners; the last owner stays', async () => {
    const owner = await ownerOfNewOrg('roles');
    const join = async (role: string, label: string) => {
      const email = `${unique(label)}@example.com`;
      const token = (await invite(owner.token, email, role)).data!.inviteMember.invitationToken.token;
      const reg = await registerAndConfirm(url, { email, name: label });
      await accept(reg.accessToken, token);
      return { ...(await switchTo(reg.accessToken, owner.orgId)), email };
    };
    const viewer = await join('viewer', 'viewer');
    const member = await join('member', 'member');
    const admin = await join('admin', 'admin');
    await addClient(owner.token, 'Visible to viewers');

    expect(await listClients(viewer.accessToken)).toHaveLength(1);
    expect(errorCode(await addClient(viewer.accessToken, 'Viewer write'))).toBe('FORBIDDEN');
    expect((await addClient(member.accessToken, 'Member write')).errors).toBeUndefined();
    expect(errorCode(await invite(member.accessToken, `${unique('x')}@example.com`, 'viewer'))).toBe('NOT_PERMITTED');
    expect(errorCode(await invite(admin.accessToken, `${unique('x')}@example.com`, 'owner'))).toBe('OWNER_REQUIRED');

    const all = await memberships(owner.token);
    const row = (userId: string) => all.find((m) => m.userId === userId)!.rowId;
    // An admin promotes a viewer to member...
    const promoted = await setRole(admin.accessToken, owner.orgId, row(viewer.userId), 'member');
    expect(promoted.errors).toBeUndefined();
    // ...but may not make anyone owner, nor demote the owner.
    expect(errorCode(await setRole(admin.accessToken, owner.orgId, row(member.userId), 'owner'))).toBe('OWNER_REQUIRED');
    expect(errorCode(await setRole(admin.accessToken, owner.orgId, row(owner.userId), 'admin'))).toBe('OWNER_REQUIRED');
    // A member changes nobody's role: row-level security hides the row from the update.
    const byMember = await setRole(member.accessToken, owner.orgId, row(viewer.userId), 'admin');
    expect(byMember.data?.updateOrganizationMember ?? null).toEqual(byMember.errors ? null : { organizationMember: null });
    // The only owner cannot step down or leave...
    expect(errorCode(await setRole(owner.token, owner.orgId, row(owner.userId), 'admin'))).toBe('LAST_OWNER');
    const leave = await gql(url, 'mutation($o: UUID!, $id: UUID!) { deleteOrganizationMember(input: { organizationId: $o, rowId: $id }) { deletedOrganizationMemberId } }', { o: owner.orgId, id: row(owner.userId) }, owner.token);
    expect(errorCode(leave)).toBe('LAST_OWNER');
    // ...until someone else is owner.
    expect((await setRole(owner.token, owner.orgId, row(admin.userId), 'owner')).errors).toBeUndefined();
    expect((await setRole(owner.token, owner.orgId, row(owner.userId), 'admin')).errors).toBeUndefined();
    const roles = Object.fromEntries((await memberships(owner.token)).map((m) => [m.userId, m.role]));
    expect(roles).toEqual({ [owner.userId]: 'admin', [admin.userId]: 'owner', [member.userId]: 'member', [viewer.userId]: 'member' });
  });

  test('errors carry a stable code and a human message, never SQL', async () => {
    const owner = await ownerOfNewOrg('errors');
    const res = await gql(url, 'mutation { createClientCompany(input: { clientCompany: { name: "x", website: "ftp://nope" } }) { clientCompany { rowId } } }', {}, owner.token);
    expect(res.errors?.[0].extensions?.code).toBe('CONSTRAINT_VIOLATION');
    expect(res.errors?.[0].message).not.toMatch(/violates|relation|"|select |insert into|client_companies/i);
  });
});

describe('production', () => {
  test('GraphiQL is not served, neither at /graphiql nor for a browser GET of /graphql', async () => {
    const prod = await startTestApp({ env: { NODE_ENV: 'production', SMTP_URL: 'smtp://127.0.0.1:25', APP_URL: 'https://app.example.com' } });
    try {
      expect((await fetch(`${prod.url}/graphiql`)).status).toBe(404);
      const browser = await fetch(`${prod.url}/graphql`, { headers: { accept: 'text/html' } });
      expect(browser.headers.get('content-type') ?? '').not.toContain('text/html');
      expect((await gql(prod.url!, '{ __typename }')).data).toEqual({ __typename: 'Query' });
    } finally {
      await prod.stop();
    }
  });
});
