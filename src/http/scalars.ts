// Scalars that refuse, as they are read, the values the database would refuse: the edge's early
// answer, naming the field. The database stays the authority (the domains of
// sql/functions/value_domains.sql refuse the same values from any SQL client); here a bad value
// never reaches it, and graphql-js reports which argument and which field inside it, e.g.
//   Variable "$input" got invalid value "NaN" at "input.invoiceLineItem.unitPrice"; A number must …
// which the API answers as INVALID_VALUE (src/http/errors.ts). A bad literal in the document
// fails validation with the same message ("Expected value of type "BigFloat", found "NaN"; …").
//
//   String    no NUL character (PostgreSQL text cannot hold \u0000)
//   JSON      no NUL character in any string or key (jsonb cannot hold it either)
//   BigFloat  a finite decimal number ("12.50", "-3", "1e3"; not NaN, Infinity, "") below
//             BIG_FLOAT_LIMIT in magnitude: the widest numeric domain (app_public.money_amount,
//             numeric(14,2)); tests/input-domains.test.ts checks the two agree
//   BigInt    a whole number within PostgreSQL's bigint
//   Date      YYYY-MM-DD, a day that exists, within app_public.business_date (1900-01-01 to
//             2999-12-31): every date column has that domain
//   Datetime  ISO 8601 / RFC 3339, a day and time that exist (no 'infinity')
//
// The plugin also keeps domains' GraphQL types those of their base types: a column of
// app_public.money_amount is a BigFloat like any numeric, a business_date a Date, an
// email_address a String, a retention_window an Int (PostGraphile would otherwise make a scalar
// per domain — MoneyAmount, BusinessDate, … — and every client's `$price: BigFloat!` would stop
// matching).
import { GraphQLError, Kind, print, type GraphQLScalarType, type ValueNode } from 'postgraphile/graphql';

/** Magnitude no BigFloat input may reach: 10^12, what app_public.money_amount (numeric(14,2)) holds. */
export const BIG_FLOAT_LIMIT = 1e12;
/** The range of app_public.business_date, which every date column has. */
export const DATE_MIN = '1900-01-01';
export const DATE_MAX = '2999-12-31';

const INT8_MIN = -(2n ** 63n);
const INT8_MAX = 2n ** 63n - 1n;
const NUL = '\u0000';

const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,4})?$/;
const WHOLE = /^[+-]?\d{1,19}$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATETIME = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?)?(?:[Zz]|[+-](\d{2})(?::?(\d{2}))?)?$/;

/** A value a scalar refuses; its message says why (withCheck makes it a GraphQLError). */
class RefusedValue extends Error {}

const fail = (message: string): never => {
  throw new RefusedValue(message);
};

function daysIn(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** Refuses a day that does not exist (2024-02-30, 2023-13-01, year 0). */
function assertDay(text: string, year: number, month: number, day: number): void {
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) fail(`There is no such day: ${text}.`);
}

function noNul(value: unknown): void {
  if (typeof value === 'string') {
    if (value.includes(NUL)) fail('Text must not contain the NUL character (\\u0000).');
  } else if (Array.isArray(value)) {
    value.forEach(noNul);
  } else if (value !== null && typeof value === 'object') {
    for (const [key, inner] of Object.entries(value)) {
      noNul(key);
      noNul(inner);
    }
  }
}

/** What each scalar accepts, checked on the value its own parser produced. */
export const SCALAR_CHECKS: Record<string, (value: unknown) => void> = {
  String: noNul,
  JSON: noNul,
  BigFloat(value) {
    const text = String(value);
    if (!DECIMAL.test(text)) fail('Expected a decimal number such as "12.50" (NaN and Infinity are not numbers Atrium stores).');
    if (!(Math.abs(Number(text)) < BIG_FLOAT_LIMIT)) fail('A number must be below 1,000,000,000,000 in magnitude.');
  },
  BigInt(value) {
    const text = String(value);
    if (!WHOLE.test(text) || BigInt(text) < INT8_MIN || BigInt(text) > INT8_MAX) {
      fail(`Expected a whole number from ${INT8_MIN} to ${INT8_MAX}.`);
    }
  },
  Date(value) {
    const text = String(value);
    const parts = DATE.exec(text);
    if (!parts) fail('Expected a date as YYYY-MM-DD.');
    assertDay(text, Number(parts![1]), Number(parts![2]), Number(parts![3]));
    if (text < DATE_MIN || text > DATE_MAX) fail(`A date must be between ${DATE_MIN} and ${DATE_MAX}.`);
  },
  Datetime(value) {
    const text = String(value);
    const parts = DATETIME.exec(text);
    if (!parts) fail('Expected a point in time in ISO 8601, e.g. 2024-05-01T09:30:00Z.');
    const [, year, month, day, hour, minute, second, offsetHour, offsetMinute] = parts!.map((p) => (p === undefined ? 0 : Number(p)));
    assertDay(text, year, month, day);
    const midnight = hour === 24 && minute === 0 && second === 0;
    if ((hour > 23 && !midnight) || minute > 59 || second > 60 || offsetHour > 15 || offsetMinute > 59) fail(`There is no such time: ${text}.`);
  },
};

const WRAPPED = Symbol('atrium.scalarChecks');

/**
 * Wraps a scalar's parsers so every value they accept passes `check` first. A refusal is a
 * GraphQLError: graphql-js prefixes a variable's with `Variable "$x" got invalid value … at
 * "path"`, and a literal's message is written here in graphql-js's own words, with its location.
 */
function withCheck<T extends { parseValue?: (value: unknown) => unknown; parseLiteral?: (ast: ValueNode, variables?: any) => unknown }>(
  name: string,
  config: T,
  check: (value: unknown) => void,
): T {
  const { parseValue, parseLiteral } = config;
  return {
    ...config,
    parseValue(value: unknown) {
      const parsed = parseValue ? parseValue(value) : value;
      try {
        if (parsed != null) check(parsed);
      } catch (error) {
        if (error instanceof RefusedValue) throw new GraphQLError(error.message);
        throw error;
      }
      return parsed;
    },
    parseLiteral(ast: ValueNode, variables?: any) {
      const parsed = parseLiteral ? parseLiteral(ast, variables) : undefined;
      try {
        // A variable inside a literal (JSON) was checked when the variable was read.
        if (parsed != null && ast.kind !== Kind.VARIABLE) check(parsed);
      } catch (error) {
        if (error instanceof RefusedValue) throw new GraphQLError(`Expected value of type "${name}", found ${print(ast)}; ${error.message}`, { nodes: ast });
        throw error;
      }
      return parsed;
    },
  };
}

/**
 * graphql-js owns String (introspection uses the same object), so it cannot be swapped for a
 * checked copy: its parsers are wrapped in place, once per process (the only schema here is the
 * API's).
 */
function checkBuiltinString(type: GraphQLScalarType): void {
  const marked = type as GraphQLScalarType & { [WRAPPED]?: true };
  if (marked[WRAPPED]) return;
  const checked = withCheck(type.name, { parseValue: type.parseValue.bind(type), parseLiteral: type.parseLiteral.bind(type) }, SCALAR_CHECKS.String);
  type.parseValue = checked.parseValue;
  type.parseLiteral = checked.parseLiteral;
  marked[WRAPPED] = true;
}

/** GraphQL types for the base types of domains (by the base codec's name). */
const BASE_TYPE_NAMES: Record<string, string> = {
  numeric: 'BigFloat',
  int8: 'BigInt',
  int4: 'Int',
  date: 'Date',
  timestamptz: 'Datetime',
  text: 'String',
};

interface CodecLike {
  name: string;
  domainOfCodec?: CodecLike;
  attributes?: Record<string, { codec: CodecLike }>;
  arrayOfCodec?: CodecLike;
}

export const ScalarChecksPlugin: GraphileConfig.Plugin = {
  name: 'AtriumScalarChecksPlugin',
  version: '1.0.0',
  description: 'Scalars refuse NUL characters, non-finite or out-of-range numbers and impossible or out-of-range dates; domains keep their base types',
  schema: {
    hooks: {
      init: {
        // Before PgCodecs gives each domain a scalar of its own.
        before: ['PgCodecs'],
        callback(_, build) {
          checkBuiltinString(build.graphql.GraphQLString);
          const seen = new Set<CodecLike>();
          const visit = (codec: CodecLike | undefined): void => {
            if (!codec || seen.has(codec)) return;
            seen.add(codec);
            Object.values(codec.attributes ?? {}).forEach((a) => visit(a.codec));
            visit(codec.arrayOfCodec);
            const base = codec.domainOfCodec;
            const typeName = base && BASE_TYPE_NAMES[base.name];
            if (typeName && !build.hasGraphQLTypeForPgCodec(codec as never)) {
              build.setGraphQLTypeForPgCodec(codec as never, ['input', 'output'], build.inflection.builtin(typeName));
            }
          };
          Object.values(build.input.pgRegistry.pgCodecs as Record<string, CodecLike>).forEach(visit);
          Object.values(build.input.pgRegistry.pgResources as Record<string, { codec: CodecLike; parameters?: Array<{ codec: CodecLike }> }>).forEach((r) => {
            visit(r.codec);
            r.parameters?.forEach((p) => visit(p.codec));
          });
          return _;
        },
      },
      GraphQLScalarType(config) {
        const check = SCALAR_CHECKS[config.name];
        return check ? withCheck(config.name, config, check) : config;
      },
    },
  },
};
