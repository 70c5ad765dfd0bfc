--! Previous: sha1:752d07777828079b9b905499336343aaa1cdaec2
--! Hash: sha1:844ba9a752f469ee8b9fd8c7e7a438756add2dc9
--! Message: Hide integrity-only keys from the GraphQL API

-- The composite keys that make a document's engagement belong to its client (migration 000004)
-- are integrity rules, not relations a client app navigates: keep them out of the GraphQL API
-- (engagement and clientCompany relations already exist).
comment on constraint engagements_organization_id_id_client_company_id_key on app_public.engagements is '@behavior -single -update -delete';
comment on constraint proposals_engagement_client_fkey on app_public.proposals is '@behavior -singularRelation:resource:single -manyRelation:resource:connection -manyRelation:resource:list';
comment on constraint invoices_engagement_client_fkey on app_public.invoices is '@behavior -singularRelation:resource:single -manyRelation:resource:connection -manyRelation:resource:list';
