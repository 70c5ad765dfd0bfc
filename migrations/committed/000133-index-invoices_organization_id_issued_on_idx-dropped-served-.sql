--! Previous: sha1:17a0c34f03edd27351e71c636a2c04adc44865be
--! Hash: sha1:c1e2345fde8e8cc0872af4da96aff7807ce61e17
--! Message: Index: invoices_organization_id_issued_on_idx dropped, served by the one ending in id

--! no-transaction
-- invoices_organization_id_issued_on_idx is a prefix of invoices_organization_id_issued_on_id_idx, which serves all it served.
drop index concurrently if exists app_public.invoices_organization_id_issued_on_idx;
