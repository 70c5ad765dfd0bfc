--! Previous: sha1:59f8dd1cf2d22de70c7e38ebaded7d1ab3419729
--! Hash: sha1:0878f990ff3c154702e04d124f558569f23a30e0
--! Message: Index: webhook_deliveries's index on creation time dropped, served by the one ending in id

--! no-transaction
-- webhook_deliveries_organization_id_created_at_idx is a prefix of webhook_deliveries_organization_id_created_at_id_idx
-- (the order of creation with its id tie-break): the longer index serves all it served.
drop index concurrently if exists app_public.webhook_deliveries_organization_id_created_at_idx;
