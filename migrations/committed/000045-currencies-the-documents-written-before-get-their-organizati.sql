--! Previous: sha1:161bbfe1eddd9160c07eac330894849d4e538148
--! Hash: sha1:52308776f059551fe547a85f506863e02a99350d
--! Message: Currencies: the documents written before get their organization's currency

--! no-transaction
-- The documents written before migration 000044 get their organization's currency, in batches of
-- 5,000 rows, each committed (the procedure commits; no long lock): sql/functions/currencies.sql.
call app_private.fill_document_currencies(5000);
