--! Previous: sha1:bfffeba1f4ac2e5de6b6f8281a50b142bc9de967
--! Hash: sha1:afd6804ad4cdc1a1617e75e819144566e24a5c25
--! Message: Index: payments_organization_id_received_on_idx dropped, served by the one ending in id

--! no-transaction
-- payments_organization_id_received_on_idx is a prefix of payments_organization_id_received_on_id_idx, which serves all it served.
drop index concurrently if exists app_public.payments_organization_id_received_on_idx;
