--! Previous: sha1:457ddcf6fbaf1e9c2c631c0ac77d47638325d5b4
--! Hash: sha1:17a186aa22b0f01ac28e1f5ab5d2309f34823f12
--! Message: Search: task titles searchable in the API's filter (pg_trgm), not an order of lists

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
set local statement_timeout = '60s';
--! Included functions/search.sql
-- Searching lists by text: the API offers `filter` on indexed columns only
-- (src/http/postgraphile.ts), and a search for a word inside a title (`includesInsensitive`,
-- ILIKE '%word%') is served by no B-tree. A trigram index (pg_trgm, shipped with PostgreSQL,
-- a trusted extension the database owner may create) serves it: tasks.title is searchable.
-- Such a column is not an order of lists (`@behavior -orderBy`): a trigram index cannot order.
-- The index itself is built concurrently by the next migration.
-- Idempotent; re-included by later migrations.

create extension if not exists pg_trgm with schema public;

comment on column app_public.tasks.title is E'@behavior -orderBy\nThe task''s title: searchable in `filter` (e.g. `title: { includesInsensitive: "logo" }`, served by a trigram index); lists are not ordered by it.';
--! EndIncluded functions/search.sql
