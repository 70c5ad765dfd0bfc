--! Previous: sha1:7c8f78e221fe383c9bd62c8be51f3ba9852b31fd
--! Hash: sha1:71bc57c83c495f8b641eca7232cccc9cc5d0aca9
--! Message: Index: budget_alerts in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- budget_alerts in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists budget_alerts_organization_id_created_at_id_idx on app_public.budget_alerts (organization_id, created_at, id);
