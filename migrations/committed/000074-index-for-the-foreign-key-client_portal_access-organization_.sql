--! Previous: sha1:16df0c45033b868593f829318f3d8d5bca35730a
--! Hash: sha1:d32318fa0ea3e19d4087b7cdc72d6cd1d6c52ff9
--! Message: Index for the foreign key client_portal_access (organization_id, contact_id) to contacts, which had only a partial one

--! no-transaction
-- The foreign key client_portal_access (organization_id, contact_id) → contacts had only a partial
-- index (the live grants, revoked_at is null): deleting or erasing a contact must also find the
-- revoked grants, so it read every grant of the organization. An index on the key's columns.
create index concurrently if not exists client_portal_access_organization_id_contact_id_idx on app_public.client_portal_access (organization_id, contact_id);
