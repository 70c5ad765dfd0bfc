-- Error codes: the one list of errors a client can get, each with a stable code, the SQLSTATE
-- that carries it out of PostgreSQL, and the HTTP status the API answers with.
-- SQL raises them by name: `perform app_private.fail('LAST_OWNER', 'An organization must keep an owner');`
-- The API maps the SQLSTATE back to the code (src/http/errors.ts loads this table at start), and
-- docs/ERRORS.md lists the same rows (tests/docs.test.ts checks they agree).
-- Re-included by later migrations whenever a code is added; every statement is idempotent.

create table if not exists app_private.error_codes (
  code text primary key check (code ~ '^[A-Z][A-Z_]*$'),
  sqlstate text not null unique check (sqlstate ~ '^[0-9A-Z]{5}$'),
  http_status int not null check (http_status between 400 and 599),
  description text not null
);
alter table app_private.error_codes enable row level security;
alter table app_private.error_codes force row level security;
comment on table app_private.error_codes is 'Stable error codes: SQLSTATE carried by PostgreSQL, code and HTTP status returned by the API.';

insert into app_private.error_codes (code, sqlstate, http_status, description) values
  -- Raised by PostgreSQL itself
  ('FORBIDDEN', '42501', 403, 'The current user may not do this (permission denied or row-level security).'),
  ('ALREADY_EXISTS', '23505', 409, 'A record with these unique values already exists.'),
  ('INVALID_REFERENCE', '23503', 422, 'A referenced record does not exist in this organization, or is still referenced.'),
  ('CONSTRAINT_VIOLATION', '23514', 422, 'A value breaks a rule of the data model (check constraint).'),
  ('REQUIRED_VALUE', '23502', 422, 'A required value is missing.'),
  ('INVALID_INPUT', '22P02', 400, 'A value has the wrong format (e.g. not a UUID or number).'),
  ('INVALID_VALUE', '22023', 400, 'A value is outside what is allowed.'),
  ('VALUE_TOO_LONG', '22001', 400, 'A text value is longer than allowed.'),
  ('RETRY', '40001', 409, 'The transaction conflicted with another one; retry it.'),
  ('DEADLOCK', '40P01', 409, 'The transaction deadlocked with another one; retry it.'),
  -- Raised by Atrium's functions and triggers (class AT)
  ('UNAUTHENTICATED', 'AT401', 401, 'Sign in first: this needs a signed-in user.'),
  ('NO_ORGANIZATION', 'AT402', 403, 'Choose an organization first (switchOrganization): this needs one.'),
  ('NOT_PERMITTED', 'AT403', 403, 'Your role in this organization does not allow this.'),
  ('NOT_FOUND', 'AT404', 404, 'No such record in this organization (or it is not visible to you).'),
  ('INVALID_CREDENTIALS', 'AT410', 401, 'Email or password is wrong.'),
  ('INVALID_REFRESH_TOKEN', 'AT411', 401, 'The refresh token is unknown, expired, revoked or was already used; sign in again.'),
  ('EMAIL_TAKEN', 'AT412', 409, 'An account with this email already exists.'),
  ('WEAK_PASSWORD', 'AT413', 400, 'The password must be 8 to 72 characters long.'),
  ('INVALID_EMAIL', 'AT414', 400, 'The email address is not valid.'),
  ('TOO_MANY_ATTEMPTS', 'AT417', 429, 'Too many failed sign-ins for this account: it is locked for 15 minutes.'),
  ('LAST_OWNER', 'AT420', 409, 'An organization must keep at least one owner.'),
  ('OWNER_REQUIRED', 'AT421', 403, 'Only an owner may grant, change or remove the owner role.'),
  ('INVITATION_INVALID', 'AT422', 404, 'The invitation is unknown, expired, revoked, already used, or for another email.'),
  ('ALREADY_MEMBER', 'AT423', 409, 'This user is already a member of the organization.'),
  ('NOT_RESTORABLE', 'AT430', 409, 'The record is not deleted, or its retention window has passed.'),
  ('IMMUTABLE', 'AT440', 403, 'This record cannot be changed or deleted.'),
  ('INVALID_TRANSITION', 'AT450', 409, 'The record''s status cannot change that way (see app_private.status_transitions).'),
  ('NOT_EDITABLE', 'AT451', 409, 'The record has left its editable status (e.g. a sent invoice, a signed contract) and can no longer be changed.'),
  ('HAS_LIVE_ENGAGEMENTS', 'AT452', 409, 'The client company still has active or on-hold engagements; complete or cancel them first.'),
  ('OVERPAYMENT', 'AT460', 422, 'The payment is larger than the invoice''s balance.'),
  ('NOT_PAYABLE', 'AT461', 409, 'The invoice does not take payments in its status (only sent, viewed or overdue invoices do).'),
  ('EMPTY_DOCUMENT', 'AT462', 422, 'A proposal or invoice needs at least one line and a total above zero before it is sent.'),
  ('EXPIRED', 'AT463', 409, 'The proposal''s validity date has passed.'),
  ('INVALID_EVENT_TYPE', 'AT470', 422, 'A webhook endpoint names an event type that does not exist (see webhookEventTypes).'),
  ('NOT_RETRYABLE', 'AT471', 409, 'Only failed or cancelled deliveries of an enabled endpoint can be sent again.'),
  ('UNKNOWN_TASK', 'AT472', 422, 'The task is not one that other services may queue (see app_private.producer_tasks).'),
  ('INTERNAL', 'AT500', 500, 'Unexpected error.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;

-- Raise a catalogued error. Unknown codes are a bug and raise INTERNAL with the code in the message.
create or replace function app_private.fail(code text, message text) returns void
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_sqlstate text;
begin
  select e.sqlstate into v_sqlstate from app_private.error_codes e where e.code = fail.code;
  if v_sqlstate is null then
    raise exception 'unknown error code %: %', code, message using errcode = 'AT500';
  end if;
  raise exception using message = message, errcode = v_sqlstate;
end
$$;
comment on function app_private.fail(text, text) is 'Raises the catalogued error `code` (app_private.error_codes) with a human message.';

-- Password reset (sql/functions/password_reset.sql).
insert into app_private.error_codes (code, sqlstate, http_status, description) values
  ('RESET_TOKEN_INVALID', 'AT415', 400, 'The password-reset token is unknown, was replaced by a newer one, or was already used; ask for a new one.'),
  ('RESET_TOKEN_EXPIRED', 'AT416', 400, 'The password-reset token has expired; ask for a new one.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;

-- Sign-up by email (sql/functions/registration.sql): confirming a registration.
insert into app_private.error_codes (code, sqlstate, http_status, description) values
  ('REGISTRATION_TOKEN_INVALID', 'AT491', 400, 'The confirmation token is unknown, was replaced by a newer one, or was already used; sign up again.'),
  ('REGISTRATION_TOKEN_EXPIRED', 'AT492', 400, 'The confirmation token has expired; sign up again.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;
