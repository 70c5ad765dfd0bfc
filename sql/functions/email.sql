-- Transactional email: the outbox side in SQL. Writes that should send an email enqueue a
-- `send_email` job in their own transaction (src/worker/tasks/send_email.ts sends it):
--   invitation      app_public.invite_member                    (sql/functions/auth.sql)
--   password_reset  app_private.request_password_reset          (sql/functions/password_reset.sql)
--   proposal_sent   a proposal goes draft → sent                 (trigger below)
--   invoice_sent    an invoice goes draft → sent                 (trigger below)
-- A rolled-back write therefore never emails anyone, and a committed one always has its job.
--
-- A message's one-time secret (the token of an invitation, password-reset or sign-up link) never
-- travels in the job: the job carries ids, and the secret waits in app_private.email_secrets,
-- which only the worker reads (app_private.email_secret), inside the transaction that claims the
-- message. It is deleted when the message is recorded as sent, when its invitation, reset or
-- sign-up is replaced, revoked or used (app_private.cancel_email), and once it expires. So no
-- token sits in graphile-worker's job rows, reaches its log lines or a job's last_error.
--
-- Each message has an idempotency key, `message_key` (e.g. invitation:<invitation id>), used as
-- the job key (enqueuing it again while pending collapses into one job) and as the primary key of
-- app_private.email_messages, where the worker records each message: it claims the key before
-- sending and marks it sent afterwards, so a retried job never sends a message recorded as sent.
-- The one window left — the SMTP server accepted the message but the worker died before
-- recording it — sends it again on retry, with the same Message-ID (docs/DATA_FLOWS.md, "Email").
-- Idempotent; re-included by later migrations.

------------------------------------------------------------------------------------------------
-- The send log. Only the worker writes it, through the two functions below; nobody reads it
-- through the API. Message bodies are not kept (they may hold tokens), only what identifies
-- them.

create table if not exists app_private.email_messages (
  message_key text primary key check (length(message_key) between 1 and 300),
  organization_id uuid references app_public.organizations,
  template text not null check (template ~ '^[a-z][a-z0-9_]*$'),
  recipient text not null check (length(recipient) <= 320),
  attempts integer not null default 1 check (attempts >= 1),
  first_attempt_at timestamptz not null default now(),
  last_attempt_at timestamptz not null default now(),
  sent_at timestamptz,
  message_id text,
  transport text check (transport in ('smtp', 'folder')),
  transport_detail text,
  check ((sent_at is null) = (message_id is null))
);
create index if not exists email_messages_organization_id_idx on app_private.email_messages (organization_id);
call app_private.force_rls('app_private.email_messages');
comment on table app_private.email_messages is 'Every email the worker has tried to send (task send_email), by idempotency key: attempts, and when and how it was sent. No bodies.';
comment on column app_private.email_messages.organization_id is 'The organization the email is about; null for account emails (password reset).';
comment on column app_private.email_messages.transport_detail is 'SMTP: the server''s final answer; folder: the .eml file written.';

-- The one-time secrets of messages waiting to be sent, by message key (see the top of this file).
-- Nobody is granted anything on it: the owner's SECURITY DEFINER functions below write and read
-- it, the worker through app_private.email_secret only.
create table if not exists app_private.email_secrets (
  message_key text primary key check (length(message_key) between 1 and 300),
  organization_id uuid references app_public.organizations on delete cascade,
  secrets jsonb not null check (jsonb_typeof(secrets) = 'object'),
  created_at timestamptz not null default now(),
  expires_at timestamptz not null
);
create index if not exists email_secrets_organization_id_idx on app_private.email_secrets (organization_id);
create index if not exists email_secrets_expires_at_idx on app_private.email_secrets (expires_at);
call app_private.force_rls('app_private.email_secrets');
comment on table app_private.email_secrets is 'One-time secrets (link tokens) of emails not yet sent, by message key: read by the worker inside the send, deleted once sent, replaced, revoked or expired. Never in a job payload.';

-- Drops the secret and the pending job of a message that must not go out any more (its link was
-- replaced, revoked or used). A job a worker already holds finds no secret and sends nothing.
create or replace function app_private.cancel_email(message_key text) returns void
language plpgsql volatile
set search_path = pg_catalog
as $$
begin
  perform graphile_worker.remove_job('send_email:' || cancel_email.message_key);
  delete from app_private.email_secrets s where s.message_key = cancel_email.message_key;
end
$$;
comment on function app_private.cancel_email(text) is 'Cancels a queued email: removes its pending job and deletes its one-time secret.';

-- Enqueue one email, in the caller's transaction. Called only by Atrium's own SECURITY DEFINER
-- functions and triggers (granted to nobody). `data` fills the template's placeholders and goes
-- into the job; `secrets` (e.g. {"token": …}) fill the others and never do: they are kept in
-- app_private.email_secrets until `secrets_expire_at`, and the job only says it has some.
-- A key that looks like a secret in `data` is refused (a bug: it would sit in the job row).
drop function if exists app_private.enqueue_email(text, text, jsonb, text, uuid); -- before secrets
create or replace function app_private.enqueue_email(
  template text, recipient text, data jsonb, message_key text, organization_id uuid default null,
  secrets jsonb default null, secrets_expire_at timestamptz default null
) returns void
language plpgsql volatile
set search_path = pg_catalog
as $$
begin
  if exists (select from jsonb_object_keys(coalesce(enqueue_email.data, '{}')) k where k ~* '(token|password|secret)') then
    perform app_private.fail('INTERNAL', format('enqueue_email(%s): secrets go in `secrets`, never in `data` (it is stored in the job)', enqueue_email.template));
  end if;
  if enqueue_email.secrets is not null then
    if enqueue_email.secrets_expire_at is null then
      perform app_private.fail('INTERNAL', format('enqueue_email(%s): secrets need secrets_expire_at', enqueue_email.template));
    end if;
    -- Expired secrets of other messages go at the same time (their links no longer work).
    delete from app_private.email_secrets s where s.expires_at <= now();
    insert into app_private.email_secrets as s (message_key, organization_id, secrets, expires_at)
    values (enqueue_email.message_key, enqueue_email.organization_id, enqueue_email.secrets, enqueue_email.secrets_expire_at)
    on conflict on constraint email_secrets_pkey do update
      set organization_id = excluded.organization_id, secrets = excluded.secrets, created_at = now(), expires_at = excluded.expires_at;
  end if;
  perform graphile_worker.add_job(
    'send_email',
    json_strip_nulls(json_build_object(
      'organization_id', enqueue_email.organization_id,
      'template', enqueue_email.template,
      'to', enqueue_email.recipient,
      'data', enqueue_email.data,
      'message_key', enqueue_email.message_key,
      'has_secrets', case when enqueue_email.secrets is not null then true end
    )),
    job_key => 'send_email:' || enqueue_email.message_key,
    max_attempts => 12
  );
end
$$;
comment on function app_private.enqueue_email(text, text, jsonb, text, uuid, jsonb, timestamptz) is 'Enqueues the send_email job of one message in the current transaction (job key send_email:<message_key>); its one-time secrets wait in app_private.email_secrets, not in the job.';

-- The worker, before sending: records an attempt at `message_key` in the current organization
-- (app.org_id; none for account emails). Returns the attempt's number (1 the first time; more
-- means an earlier attempt did not record its outcome), or null when the message was already
-- sent (the job is a retry or a duplicate: send nothing). Only the worker's session may call it.
create or replace function app_private.claim_email(message_key text, template text, recipient text) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v app_private.email_messages;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker sends emails.');
  end if;
  -- An email about an organization that was deleted (sql/functions/organization_deletion.sql) is
  -- not sent: its job was taken before the purge.
  if v_org is not null and not exists (select from app_public.organizations o where o.id = v_org) then
    return null;
  end if;
  insert into app_private.email_messages as m (message_key, organization_id, template, recipient)
  values (claim_email.message_key, v_org, claim_email.template, claim_email.recipient)
  on conflict on constraint email_messages_pkey do update
    set attempts = m.attempts + 1, last_attempt_at = now()
    where m.sent_at is null and m.organization_id is not distinct from v_org
  returning m.* into v;
  if v.message_key is null then
    -- Either sent already, or the key belongs to another organization (never reused across them).
    select m.* into v from app_private.email_messages m where m.message_key = claim_email.message_key;
    if v.organization_id is distinct from v_org then
      perform app_private.fail('NOT_PERMITTED', 'This email belongs to another organization.');
    end if;
    return null;
  end if;
  return v.attempts;
end
$$;
comment on function app_private.claim_email(text, text, text) is 'Worker only: records an attempt to send message_key; returns the attempt number, or null when it already went out.';

-- The worker, after the transport accepted the message.
create or replace function app_private.record_email_sent(message_key text, message_id text, transport text, transport_detail text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker sends emails.');
  end if;
  update app_private.email_messages m
  set sent_at = now(), message_id = record_email_sent.message_id, transport = record_email_sent.transport,
      transport_detail = left(record_email_sent.transport_detail, 1000)
  where m.message_key = record_email_sent.message_key
    and m.organization_id is not distinct from app_public.current_org_id()
    and m.sent_at is null;
  -- Sent: its one-time secret is needed no more.
  delete from app_private.email_secrets s
  where s.message_key = record_email_sent.message_key
    and s.organization_id is not distinct from app_public.current_org_id();
end
$$;
comment on function app_private.record_email_sent(text, text, text, text) is 'Worker only: marks message_key as sent (Message-ID, transport, SMTP answer or file) and deletes its one-time secret.';

-- The worker, inside the transaction that claims a message: its one-time secrets (a JSON object),
-- or null when there are none any more (sent, replaced, revoked or expired: send nothing). Only
-- the worker's session may call it, and only for a message of the current organization.
create or replace function app_private.email_secret(message_key text) returns jsonb
language plpgsql stable security definer
set search_path = pg_catalog
as $$
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker reads the secrets of emails.');
  end if;
  return (
    select s.secrets from app_private.email_secrets s
    where s.message_key = email_secret.message_key
      and s.organization_id is not distinct from app_public.current_org_id()
      and s.expires_at > now()
  );
end
$$;
comment on function app_private.email_secret(text) is 'Worker only: the one-time secrets of a message waiting to be sent, or null when it must not go out any more.';

revoke all on function
  app_private.cancel_email(text),
  app_private.enqueue_email(text, text, jsonb, text, uuid, jsonb, timestamptz),
  app_private.claim_email(text, text, text),
  app_private.record_email_sent(text, text, text, text),
  app_private.email_secret(text)
from public;
grant execute on function
  app_private.claim_email(text, text, text),
  app_private.record_email_sent(text, text, text, text),
  app_private.email_secret(text)
to :DATABASE_WORKER;

-- An invitation that is revoked (deleted) or replaced by a new one (inviteMember again) takes its
-- email along while it is still waiting in the queue, and its token with it: nobody receives a
-- link that no longer works.
-- AFTER DELETE per row; SECURITY DEFINER because the queue is not the visitor's.
create or replace function app_private.tg_invitations__cancel_email() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if old.accepted_at is null then
    perform app_private.cancel_email(format('invitation:%s', old.id));
  end if;
  return null;
end
$$;

drop trigger if exists tg_invitations__cancel_email on app_public.invitations;
create trigger tg_invitations__cancel_email after delete on app_public.invitations
  for each row execute function app_private.tg_invitations__cancel_email();

------------------------------------------------------------------------------------------------
-- Proposals and invoices sent to the client: one email to each primary contact of the client
-- company who has an email address (contacts.is_primary; deleted contacts excluded). A client
-- without one gets no email — the document is still sent (visible in the client portal).

create or replace function app_private.format_money(amount numeric, currency text) returns text
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select to_char(amount, 'FM999G999G999G990D00') || ' ' || currency
$$;

create or replace function app_private.format_day(day date) returns text
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select to_char(day, 'FMMonth FMDD, YYYY')
$$;

-- The client company's primary contacts with an email address.
create or replace function app_private.email_contacts_of(organization_id uuid, client_company_id uuid)
returns table (contact_id uuid, email text, name text)
language sql stable
set search_path = pg_catalog
as $$
  select c.id, c.email, c.first_name
  from app_public.contacts c
  where c.organization_id = email_contacts_of.organization_id
    and c.client_company_id = email_contacts_of.client_company_id
    and c.is_primary and c.email is not null and c.deleted_at is null
  order by c.created_at, c.id
$$;

-- AFTER UPDATE OF status on proposals, when a draft becomes sent. SECURITY DEFINER: it reads the
-- client's contacts and the organization whatever the sender may read, and enqueues jobs; it only
-- touches rows of the proposal's own organization.
create or replace function app_private.tg_proposals__email_sent() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_org app_public.organizations;
  v_client text;
begin
  select o.* into v_org from app_public.organizations o where o.id = new.organization_id;
  select cc.name into v_client from app_public.client_companies cc where cc.organization_id = new.organization_id and cc.id = new.client_company_id;
  perform app_private.enqueue_email(
    'proposal_sent',
    r.email,
    jsonb_build_object(
      'contact_name', r.name,
      'organization_name', v_org.name,
      'client_name', v_client,
      'proposal_id', new.id,
      'proposal_title', new.title,
      'total', app_private.format_money(new.total, new.currency),
      'validity', case when new.valid_until is null then '' else format('It is valid until %s.', app_private.format_day(new.valid_until)) end
    ),
    format('proposal_sent:%s:%s', new.id, r.contact_id),
    new.organization_id
  )
  from app_private.email_contacts_of(new.organization_id, new.client_company_id) r;
  return null;
end
$$;

drop trigger if exists tg_proposals__email_sent on app_public.proposals;
create trigger tg_proposals__email_sent after update of status on app_public.proposals
  for each row when (old.status = 'draft' and new.status = 'sent')
  execute function app_private.tg_proposals__email_sent();

-- AFTER UPDATE OF status on invoices, when a draft becomes sent (sendInvoice: numbered, dated).
create or replace function app_private.tg_invoices__email_sent() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_org app_public.organizations;
  v_client text;
begin
  select o.* into v_org from app_public.organizations o where o.id = new.organization_id;
  select cc.name into v_client from app_public.client_companies cc where cc.organization_id = new.organization_id and cc.id = new.client_company_id;
  perform app_private.enqueue_email(
    'invoice_sent',
    r.email,
    jsonb_build_object(
      'contact_name', r.name,
      'organization_name', v_org.name,
      'client_name', v_client,
      'invoice_id', new.id,
      'invoice_number', new.number,
      'total', app_private.format_money(new.total, new.currency),
      'amount_due', app_private.format_money(new.balance, new.currency),
      'issued_on', app_private.format_day(new.issued_on),
      'due_on', app_private.format_day(new.due_on)
    ),
    format('invoice_sent:%s:%s', new.id, r.contact_id),
    new.organization_id
  )
  from app_private.email_contacts_of(new.organization_id, new.client_company_id) r;
  return null;
end
$$;

drop trigger if exists tg_invoices__email_sent on app_public.invoices;
create trigger tg_invoices__email_sent after update of status on app_public.invoices
  for each row when (old.status = 'draft' and new.status = 'sent')
  execute function app_private.tg_invoices__email_sent();

revoke all on function
  app_private.format_money(numeric, text),
  app_private.format_day(date),
  app_private.email_contacts_of(uuid, uuid),
  app_private.tg_proposals__email_sent(),
  app_private.tg_invoices__email_sent(),
  app_private.tg_invitations__cancel_email()
from public;
