--! Previous: sha1:180a122a3b9af75b2cb097d77efeabe1e94b8e0d
--! Hash: sha1:dc20b8bea3e600b6d8c9229296257e56816aaf46
--! Message: Index: proposal_line_items in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- proposal_line_items in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists proposal_line_items_organization_id_created_at_id_idx on app_public.proposal_line_items (organization_id, created_at, id);
