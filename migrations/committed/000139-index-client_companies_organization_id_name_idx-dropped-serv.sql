--! Previous: sha1:76bcdc1e22ac3de2650963e89e01893b46055976
--! Hash: sha1:b1af7f55cf57f4128119af50d83a7600f5fd8b45
--! Message: Index: client_companies_organization_id_name_idx dropped, served by the one ending in id

--! no-transaction
-- client_companies_organization_id_name_idx is a prefix of client_companies_organization_id_name_id_idx, which serves all it served.
drop index concurrently if exists app_public.client_companies_organization_id_name_idx;
