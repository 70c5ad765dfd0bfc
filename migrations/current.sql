-- Enter migration here

-- Permissions that cannot be used to gain more; no cross-tenant existence oracles (issue 11,
-- points 8 and 6): roles pass on only what their maker holds.
--!include errors.sql
--!include functions/permissions.sql
