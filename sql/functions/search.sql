-- Searching lists by text: the API offers `filter` on indexed columns only
-- (src/http/postgraphile.ts), and a search for a word inside a title (`includesInsensitive`,
-- ILIKE '%word%') is served by no B-tree. A trigram index (pg_trgm, shipped with PostgreSQL,
-- a trusted extension the database owner may create) serves it: tasks.title is searchable.
-- Such a column is not an order of lists (`@behavior -orderBy`): a trigram index cannot order.
-- The index itself is built concurrently by the next migration.
-- Idempotent; re-included by later migrations.

create extension if not exists pg_trgm with schema public;

comment on column app_public.tasks.title is E'@behavior -orderBy\nThe task''s title: searchable in `filter` (e.g. `title: { includesInsensitive: "logo" }`, served by a trigram index); lists are not ordered by it.';
