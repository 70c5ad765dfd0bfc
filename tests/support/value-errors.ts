// One real PostgreSQL error for each catalogued failure path of a value (sql/errors.sql): a
// statement raising each SQLSTATE of app_private.error_sqlstates, and a value breaking each rule
// of app_private.domain_rules (by constraint name). tests/input-domains.test.ts and
// tests/error-contract.test.ts walk the tables with them: a new row without a sample here fails both.

/** A statement that raises the SQLSTATE, run by any role. */
export const SQLSTATE_SAMPLES: Record<string, string> = {
  '22003': `select '1e30'::numeric(14,2)`,
  '22007': `select 'next tuesday'::date`,
  '22008': `select '2024-02-30'::date`,
  '22021': `select convert_from('\\x610062'::bytea, 'UTF8')`,
  '22P05': `select '{"a": "\\u0000"}'::jsonb ->> 'a'`,
};

/** A statement whose value breaks the domain rule, run by any role. */
export const DOMAIN_RULE_SAMPLES: Record<string, string> = {
  money_amount_finite: `select 'NaN'::app_public.money_amount`,
  quantity_finite: `select 'NaN'::app_public.quantity`,
  percentage_range: `select 101::numeric(5,2)::app_public.percentage`,
  tax_percentage_range: `select 100.0001::app_public.tax_percentage`,
  business_date_range: `select 'infinity'::app_public.business_date`,
  business_timestamp_range: `select 'infinity'::app_public.business_timestamp`,
  email_address_format: `select 'not an email'::app_public.email_address`,
  retention_window_range: `select 366::app_public.retention_window`,
  activity_retention_window_range: `select 29::app_public.activity_retention_window`,
  financial_retention_years_range: `select 31::app_public.financial_retention_years`,
  country_code_format: `select 'de'::app_public.country_code`,
  exchange_rate_positive: `select 0::app_public.exchange_rate`,
};
