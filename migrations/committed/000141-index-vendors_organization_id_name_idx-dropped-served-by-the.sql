--! Previous: sha1:b46b7024a365598de5575d0b2eb945349aa000b8
--! Hash: sha1:137f489213319238eb088531cf7892fd442832a0
--! Message: Index: vendors_organization_id_name_idx dropped, served by the one ending in id

--! no-transaction
-- vendors_organization_id_name_idx is a prefix of vendors_organization_id_name_id_idx, which serves all it served.
drop index concurrently if exists app_public.vendors_organization_id_name_idx;
