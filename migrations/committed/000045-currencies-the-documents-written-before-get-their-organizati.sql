--! Previous: sha1:9f0fdef7d2984ca674e02d8d89367be881be1e5b
--! Hash: sha1:d96a434638cac5c693a389b477e2e003b6e6308b
--! Message: Currencies: the documents written before get their organization's currency

--! no-transaction
-- The documents written before migration 000044 get their organization's currency, in batches of
-- 5,000 rows, each committed (the procedure commits; no long lock): sql/functions/currencies.sql.
call app_private.fill_document_currencies(5000);
