--! Previous: sha1:5dfe022facec65f8202caab22418d45c6bc58d80
--! Hash: sha1:507b4a59adf6819d8275578553a0f3a5768aa40c
--! Message: Index for the foreign key invitations.accepted_by (users)

--! no-transaction
-- An index led by accepted_by, for its foreign key: deleting (or re-keying) the referenced row finds the
-- rows that point at it through this index instead of scanning invitations (npm run doctor, fk_indexes).
create index concurrently if not exists invitations_accepted_by_idx on app_public.invitations (accepted_by) where accepted_by is not null;
