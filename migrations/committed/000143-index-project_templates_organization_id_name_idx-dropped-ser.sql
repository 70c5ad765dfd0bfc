--! Previous: sha1:7086bd19f208572c34d56db1a2bd7588a6b5078c
--! Hash: sha1:c1588f92677c73cff8452260ee45cf30c9a3031f
--! Message: Index: project_templates_organization_id_name_idx dropped, served by the one ending in id

--! no-transaction
-- project_templates_organization_id_name_idx is a prefix of project_templates_organization_id_name_id_idx, which serves all it served.
drop index concurrently if exists app_public.project_templates_organization_id_name_idx;
