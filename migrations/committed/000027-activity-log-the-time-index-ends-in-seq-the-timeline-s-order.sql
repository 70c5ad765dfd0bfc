--! Previous: sha1:37123589b71668cf5584c757bbf50f9c5398c200
--! Hash: sha1:5dfe022facec65f8202caab22418d45c6bc58d80
--! Message: Activity log: the time index ends in seq, the timeline's order within one instant

-- The activity log's time index ends in seq instead of id: the timeline's order within one
-- instant (sql/functions/activity_partitions.sql).
create index if not exists activity_events_organization_id_occurred_at_seq_idx on app_public.activity_events (organization_id, occurred_at, seq);
drop index if exists app_public.activity_events_organization_id_occurred_at_idx;
