--! Previous: sha1:52cbc7d48b4c0a40b2ddffc7dd0c8d3b4187faba
--! Hash: sha1:270616d843b44ced8e0e211abf2641529accfa06
--! Message: Index: deals_organization_id_expected_close_on_idx dropped, served by the one ending in id

--! no-transaction
-- deals_organization_id_expected_close_on_idx is a prefix of deals_organization_id_expected_close_on_id_idx, which serves all it served.
drop index concurrently if exists app_public.deals_organization_id_expected_close_on_idx;
