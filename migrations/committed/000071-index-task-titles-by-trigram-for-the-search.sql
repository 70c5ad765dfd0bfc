--! Previous: sha1:17a186aa22b0f01ac28e1f5ab5d2309f34823f12
--! Hash: sha1:fc54b8782ac59aca9c4950d64d93c82553999e40
--! Message: Index: task titles by trigram, for the search

--! no-transaction
-- A trigram index on tasks.title (pg_trgm, migration 000070): a search for a word inside task titles
-- (the API's `includesInsensitive`, ILIKE '%word%') reads it instead of every task of the organization.
create index concurrently if not exists tasks_title_trgm_idx on app_public.tasks using gin (title public.gin_trgm_ops);
