--! Previous: sha1:c7fc10074523d9921fc962fb527dec620d533030
--! Hash: sha1:ab63e7fb5314a699111d4807d78a248fa47df02e
--! Message: Index: milestones_organization_id_due_on_idx dropped, served by the one ending in id

--! no-transaction
-- milestones_organization_id_due_on_idx is a prefix of milestones_organization_id_due_on_id_idx, which serves all it served.
drop index concurrently if exists app_public.milestones_organization_id_due_on_idx;
