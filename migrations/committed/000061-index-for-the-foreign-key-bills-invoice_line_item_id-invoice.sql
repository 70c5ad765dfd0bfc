--! Previous: sha1:71110ceb28e3f28753f48bb72f1a08c1d72f19a0
--! Hash: sha1:ab36b6b59927321a18eb3f638df3c7c30f2964c8
--! Message: Index for the foreign key bills.invoice_line_item_id (invoice_line_items)

--! no-transaction
-- An index led by (organization_id, invoice_line_item_id), for the foreign key
-- bills_invoice_line_item_fkey (migration 000060): deleting an invoice line finds the bill it
-- re-billed through it.
create index concurrently if not exists bills_organization_id_invoice_line_item_id_idx on app_public.bills (organization_id, invoice_line_item_id);
