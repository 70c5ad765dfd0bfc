--! Previous: sha1:8a8b248b8f425f305d2ee350c8d2f9f137d3ab76
--! Hash: sha1:280b030c757c80bf51ebc7a65b80050f1f9efd4b
--! Message: Index for the foreign key data_exports.requested_by (users)

--! no-transaction
-- An index led by requested_by, for its foreign key: deleting (or re-keying) the referenced row finds the
-- rows that point at it through this index instead of scanning data_exports (npm run doctor, fk_indexes).
create index concurrently if not exists data_exports_requested_by_idx on app_public.data_exports (requested_by) where requested_by is not null;
