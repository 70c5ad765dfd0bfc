--! Previous: sha1:0878f990ff3c154702e04d124f558569f23a30e0
--! Hash: sha1:f9fd18b5c9117687a63c6e41699d1f62cfad128a
--! Message: Index: webhook_endpoints's index on creation time dropped, served by the one ending in id

--! no-transaction
-- webhook_endpoints_organization_id_created_at_idx is a prefix of webhook_endpoints_organization_id_created_at_id_idx
-- (the order of creation with its id tie-break): the longer index serves all it served.
drop index concurrently if exists app_public.webhook_endpoints_organization_id_created_at_idx;
