--! Previous: sha1:507b4a59adf6819d8275578553a0f3a5768aa40c
--! Hash: sha1:a78d2662c26e0e0db07c68f0e2a811bec93894c9
--! Message: Index for the foreign key invitations.invited_by (users)

--! no-transaction
-- An index led by invited_by, for its foreign key: deleting (or re-keying) the referenced row finds the
-- rows that point at it through this index instead of scanning invitations (npm run doctor, fk_indexes).
create index concurrently if not exists invitations_invited_by_idx on app_public.invitations (invited_by) where invited_by is not null;
