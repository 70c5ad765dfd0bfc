-- Stored values that break a value rule, whatever their column's type: NaN or infinite numbers,
-- dates and times that are infinite or outside the years 1900 to 2999, email addresses not
-- lower-cased and trimmed (app_private.values_breaking_rules, sql/functions/value_domains.sql).
-- A data check, not a catalog one: the domains make such rows impossible, so it finds a column
-- that bypassed them and was written to.
select * from app_private.values_breaking_rules();
