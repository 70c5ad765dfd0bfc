-- Sales lifecycle: proposals and contracts. Each step is one function (a GraphQL mutation),
-- SECURITY DEFINER so it can write the columns the visitor may not (status, stamps) — which is
-- why each one checks the organization and the permission itself first. Status changes still
-- pass through the status machine (INVALID_TRANSITION) and the edit locks.
-- Lock order (sql/functions/lock_order.sql): each step locks its proposal or contract FOR UPDATE
-- before it reads its status; what the step then creates or changes (the contract of an accepted
-- proposal, the deal it wins, the engagement of a signed contract) comes after.

-- The organization of the request, for steps members and client-portal users both take.
create or replace function app_private.acting_org_id() returns uuid
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(app_public.current_org_id(), app_public.current_portal_org_id())
$$;

-- May the caller act on a proposal (or invoice) of `engagement_id` as a client? True for a
-- portal user of that engagement, in the organization of the request.
create or replace function app_private.is_portal_user_of(engagement_id uuid) returns boolean
language sql stable
set search_path = pg_catalog
as $$
  select app_public.current_org_id() is null
    and app_public.current_portal_org_id() is not null
    and is_portal_user_of.engagement_id = any (app_public.current_portal_engagement_ids())
$$;

-- Send a draft proposal to the client (proposals.write). It needs lines and a total above zero.
create or replace function app_public.send_proposal(proposal_id uuid) returns app_public.proposals
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.proposals;
begin
  perform app_private.require_permission('proposals.write', 'send a proposal');
  select p.* into v from app_public.proposals p
  where p.organization_id = app_public.current_org_id() and p.id = send_proposal.proposal_id and p.deleted_at is null
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such proposal in this organization.');
  end if;
  if v.status = 'draft' and v.total <= 0 then
    perform app_private.fail('EMPTY_DOCUMENT', 'Add at least one line with a price before sending the proposal.');
  end if;
  update app_public.proposals p set status = 'sent'
  where p.organization_id = v.organization_id and p.id = v.id
  returning p.* into v;
  return v;
end
$$;
comment on function app_public.send_proposal(uuid) is 'Sends a draft proposal (it must have a total above zero); stamps sent_at. Its lines are frozen from now on.';

-- Record that the client opened a sent proposal (its portal user, or a member with proposals.write).
create or replace function app_public.mark_proposal_viewed(proposal_id uuid) returns app_public.proposals
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.proposals;
begin
  select p.* into v from app_public.proposals p
  where p.organization_id = app_private.acting_org_id() and p.id = mark_proposal_viewed.proposal_id and p.deleted_at is null
    and (app_public.has_permission('proposals.write') or (p.status <> 'draft' and app_private.is_portal_user_of(p.engagement_id)))
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such proposal for you.');
  end if;
  if v.status in ('draft', 'sent') then -- a draft is refused by the status machine
    update app_public.proposals p set status = 'viewed'
    where p.organization_id = v.organization_id and p.id = v.id
    returning p.* into v;
  end if;
  return v;
end
$$;
comment on function app_public.mark_proposal_viewed(uuid) is 'Records that the client has seen a sent proposal (stamps viewed_at once; later calls change nothing).';

-- The decision on a sent or viewed proposal, by its client (portal) or a member recording it.
create or replace function app_private.decide_proposal(proposal_id uuid, decision app_public.proposal_status, decided_by_name text) returns app_public.proposals
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v app_public.proposals;
  v_action text := case decision when 'accepted' then 'accept a proposal' else 'reject a proposal' end;
begin
  if app_public.current_user_id() is null then
    perform app_private.fail('UNAUTHENTICATED', format('Sign in to %s.', v_action));
  end if;
  select p.* into v from app_public.proposals p
  where p.organization_id = app_private.acting_org_id() and p.id = decide_proposal.proposal_id and p.deleted_at is null
    and (app_public.has_permission('proposals.read') or (p.status <> 'draft' and app_private.is_portal_user_of(p.engagement_id)))
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such proposal for you.');
  end if;
  if not (app_public.has_permission('proposals.write') or app_private.is_portal_user_of(v.engagement_id)) then
    perform app_private.fail('NOT_PERMITTED', format('You need the proposals.write permission to %s.', v_action));
  end if;
  if v.status not in ('sent', 'viewed') then
    perform app_private.fail('INVALID_TRANSITION', format('A proposal cannot go from %s to %s.', v.status, decision));
  end if;
  if decision = 'accepted' and v.valid_until < current_date then
    perform app_private.fail('EXPIRED', format('This proposal was valid until %s.', v.valid_until));
  end if;
  update app_public.proposals p
  set status = decision,
      decided_by_name = coalesce(nullif(btrim(decide_proposal.decided_by_name), ''), (select u.name from app_public.users u where u.id = app_public.current_user_id()))
  where p.organization_id = v.organization_id and p.id = v.id
  returning p.* into v;
  return v;
end
$$;

-- Accept a proposal: the client (portal user of its engagement) or a member with proposals.write
-- on the client's behalf. Creates the draft contract; an open deal behind it is won.
create or replace function app_public.accept_proposal(proposal_id uuid, decided_by_name text default null) returns app_public.contracts
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.proposals := app_private.decide_proposal(proposal_id, 'accepted', decided_by_name);
  v_contract app_public.contracts;
begin
  insert into app_public.contracts (organization_id, proposal_id, client_company_id, title, value)
  values (v.organization_id, v.id, v.client_company_id, v.title, v.total)
  returning * into v_contract;
  update app_public.deals d set stage = 'won'
  where d.organization_id = v.organization_id and d.id = v.deal_id
    and d.deleted_at is null and d.stage in ('qualified', 'proposal', 'negotiation');
  return v_contract;
end
$$;
comment on function app_public.accept_proposal(uuid, text) is 'Accepts a sent or viewed proposal (its client in the portal, or a member with proposals.write) and returns the contract it creates (a draft for the same value). An open deal behind the proposal becomes won.';

create or replace function app_public.reject_proposal(proposal_id uuid, decided_by_name text default null) returns app_public.proposals
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  return app_private.decide_proposal(proposal_id, 'rejected', decided_by_name);
end
$$;
comment on function app_public.reject_proposal(uuid, text) is 'Rejects a sent or viewed proposal (its client in the portal, or a member with proposals.write).';

-- Move a contract of the current organization to `status` (contracts.write); the status machine
-- decides whether it may. The contract is locked before its status is read: of two concurrent
-- signatures, the second finds it signed (INVALID_TRANSITION) and starts no second engagement.
create or replace function app_private.set_contract_status(contract_id uuid, status app_public.contract_status, action text, signer_name text default null) returns app_public.contracts
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v app_public.contracts;
begin
  perform app_private.require_permission('contracts.write', action);
  select c.* into v from app_public.contracts c
  where c.organization_id = app_public.current_org_id() and c.id = set_contract_status.contract_id
  for update;
  if v.status = set_contract_status.status then
    perform app_private.fail('INVALID_TRANSITION', format('The contract is already %s.', status));
  elsif v.id is null or v.deleted_at is not null then
    perform app_private.fail('NOT_FOUND', 'No such contract in this organization.');
  end if;
  update app_public.contracts c
  set status = set_contract_status.status,
      signer_name = coalesce(set_contract_status.signer_name, c.signer_name)
  where c.organization_id = v.organization_id and c.id = v.id
  returning c.* into v;
  return v;
end
$$;

create or replace function app_public.send_contract(contract_id uuid) returns app_public.contracts
language sql volatile security definer
set search_path = pg_catalog
as $$
  select * from app_private.set_contract_status(contract_id, 'sent', 'send a contract')
$$;
comment on function app_public.send_contract(uuid) is 'Sends a draft contract for signature (contracts.write).';

-- Record the client's signature on a sent contract and start the engagement it covers, at the
-- hourly rate agreed when one is given (engagements.write too, as setting it later would).
drop function if exists app_public.sign_contract(uuid, text);
create or replace function app_public.sign_contract(contract_id uuid, signer_name text, hourly_rate numeric default null) returns app_public.engagements
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.contracts;
  v_engagement app_public.engagements;
begin
  if nullif(btrim(sign_contract.signer_name), '') is null then
    perform app_private.fail('INVALID_VALUE', 'Give the name of the person who signed.');
  end if;
  if sign_contract.hourly_rate is not null then
    perform app_private.require_permission('engagements.write', 'set the engagement''s hourly rate');
  end if;
  v := app_private.set_contract_status(contract_id, 'signed', 'sign a contract', btrim(sign_contract.signer_name));
  insert into app_public.engagements (organization_id, contract_id, client_company_id, name, starts_on, ends_on, hourly_rate)
  values (v.organization_id, v.id, v.client_company_id, v.title, coalesce(v.starts_on, current_date), v.ends_on, sign_contract.hourly_rate)
  returning * into v_engagement;
  return v_engagement;
end
$$;
revoke all on function app_public.sign_contract(uuid, text, numeric) from public;
grant execute on function app_public.sign_contract(uuid, text, numeric) to :DATABASE_VISITOR;
comment on function app_public.sign_contract(uuid, text, numeric) is 'Records the signature on a sent contract (contracts.write) and returns the active engagement it starts; with hourlyRate (engagements.write) the engagement''s time is priced at it unless a rate card says otherwise.';

create or replace function app_public.cancel_contract(contract_id uuid) returns app_public.contracts
language sql volatile security definer
set search_path = pg_catalog
as $$
  select * from app_private.set_contract_status(contract_id, 'cancelled', 'cancel a contract')
$$;
comment on function app_public.cancel_contract(uuid) is 'Cancels a draft or sent contract (contracts.write).';
