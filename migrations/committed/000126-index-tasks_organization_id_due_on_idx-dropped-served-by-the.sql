--! Previous: sha1:aa122bbc1ae9461eb462a15fef298c86639fbc6c
--! Hash: sha1:a0a143523010972c909b7b29451f25bf95441df4
--! Message: Index: tasks_organization_id_due_on_idx dropped, served by the one ending in id

--! no-transaction
-- tasks_organization_id_due_on_idx is a prefix of tasks_organization_id_due_on_id_idx, which serves all it served.
drop index concurrently if exists app_public.tasks_organization_id_due_on_idx;
