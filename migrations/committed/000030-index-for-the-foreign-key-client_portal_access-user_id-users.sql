--! Previous: sha1:a78d2662c26e0e0db07c68f0e2a811bec93894c9
--! Hash: sha1:8a8b248b8f425f305d2ee350c8d2f9f137d3ab76
--! Message: Index for the foreign key client_portal_access.user_id (users)

--! no-transaction
-- An index led by user_id, for its foreign key: deleting (or re-keying) the referenced row finds the
-- rows that point at it through this index instead of scanning client_portal_access (npm run doctor, fk_indexes).
create index concurrently if not exists client_portal_access_user_id_idx on app_public.client_portal_access (user_id) where user_id is not null;
