--! Previous: sha1:280b030c757c80bf51ebc7a65b80050f1f9efd4b
--! Hash: sha1:3ad19e085cbd4f1b3295ff1b74d7b21e34019a2b
--! Message: Index for the foreign key role_permissions.permission_key (permissions)

--! no-transaction
-- An index led by permission_key, for its foreign key: deleting (or re-keying) the referenced row finds the
-- rows that point at it through this index instead of scanning role_permissions (npm run doctor, fk_indexes).
create index concurrently if not exists role_permissions_permission_key_idx on app_public.role_permissions (permission_key);
