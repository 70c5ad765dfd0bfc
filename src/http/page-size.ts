// Page size: no GraphQL connection (or simple list) returns more than `config.pageSizeMax` rows
// (PAGE_SIZE_MAX, 100 by default) in one page.
//
// - `first` or `last` above the maximum is refused with PAGE_SIZE_TOO_LARGE (HTTP semantics 400,
//   `extensions.maximum` says the limit); a negative one, or both at once, with INVALID_VALUE.
//   Refusing rather than silently clamping: a client asking for 500 rows and getting 100 would
//   believe it had them all.
// - Without `first` and `last`, a page holds the maximum: the default page size *is* the maximum.
//   A separate, smaller default would be a second knob for no gain: `pageInfo.hasNextPage` tells
//   a client that more rows follow either way, and clients that care ask with `first`.
//   (Only `before`: the last page of that size before the cursor, as `last` would.)
//
// How: PostGraphile v5 has no option for this, so for every field that graphile-build-pg marks as
// a connection or simple collection, this plugin wraps the field's plan (Grafast) and sets
// `first`/`last` itself from one step that validates the arguments at run time; the arguments'
// own `applyPlan`s (PgFirstLastBeforeAfterArgsPlugin, which would call setFirst/setLast a second
// time) are removed. Both limits end up in the SQL query's LIMIT.
import { access, constant, lambda, SafeError, type Step } from 'postgraphile/grafast';
import type { ErrorCatalog } from './errors.ts';

export const PAGE_SIZE_TOO_LARGE = 'PAGE_SIZE_TOO_LARGE';
/** HTTP semantics of PAGE_SIZE_TOO_LARGE: the request asks for more than is allowed. */
export const PAGE_SIZE_TOO_LARGE_STATUS = 400;

interface PageArgs {
  /** Which of the pagination arguments the field has (set once its arguments are built). */
  first: boolean;
  last: boolean;
  before: boolean;
}

interface Paginated extends Step {
  setFirst($first: Step): void;
  setLast($last: Step): void;
}

type Page = { first: number | null; last: number | null };
type Raw = number | null | undefined;

/** The page a request gets: validates `first`/`last` and fills in the default size. */
export function pageFor(max: number, errors: ErrorCatalog, first: Raw, last: Raw, before: unknown): Page {
  for (const [name, value] of [['first', first], ['last', last]] as const) {
    if (value == null) continue;
    if (value < 0) throw errors.error('INVALID_VALUE', `\`${name}\` must be zero or more (got ${value}).`);
    if (value > max) {
      throw new SafeError(`\`${name}\` is ${value}, but a page holds at most ${max} rows; ask for ${max} or fewer and fetch the next page with \`after\` (or \`before\`).`, {
        code: PAGE_SIZE_TOO_LARGE,
        httpStatus: PAGE_SIZE_TOO_LARGE_STATUS,
        maximum: max,
      });
    }
  }
  if (first != null && last != null) throw errors.error('INVALID_VALUE', 'Give either `first` or `last`, not both.');
  if (first == null && last == null) return before == null ? { first: max, last: null } : { first: null, last: max };
  return { first: first ?? null, last: last ?? null };
}

export function makePageSizePlugin(max: number, errors: ErrorCatalog): GraphileConfig.Plugin {
  // The same scope object reaches the field hook and the field's arguments hook.
  const pageArgsOf = new WeakMap<object, PageArgs>();

  return {
    name: 'AtriumPageSizePlugin',
    version: '1.0.0',
    description: `Caps every connection's page at ${max} rows`,
    schema: {
      hooks: {
        GraphQLObjectType_fields_field(field, _build, context) {
          const { scope } = context;
          const plan = field.plan;
          if (!(scope.isPgFieldConnection || scope.isPgFieldSimpleCollection) || !plan) return field;
          const has: PageArgs = { first: false, last: false, before: false };
          pageArgsOf.set(scope, has);
          return {
            ...field,
            plan($parent, fieldArgs, info) {
              const $result = plan($parent, fieldArgs, info);
              if (!has.first || $result === null) return $result;
              const $connection = $result as Paginated;
              const $page = lambda(
                [fieldArgs.getRaw('first'), has.last ? fieldArgs.getRaw('last') : constant(null), has.before ? fieldArgs.getRaw('before') : constant(null)],
                ([first, last, before]) => pageFor(max, errors, first as Raw, last as Raw, before),
              );
              $connection.setFirst(access<Page>($page, 'first'));
              if (has.last) $connection.setLast(access<Page>($page, 'last'));
              return $result;
            },
          };
        },
        GraphQLObjectType_fields_field_args: {
          // After the plugin that adds first/last/before/after (and their applyPlans).
          after: ['PgFirstLastBeforeAfterArgsPlugin'],
          callback(args, build, context) {
            const has = pageArgsOf.get(context.scope);
            if (!has || !args.first) return args;
            has.first = true;
            has.last = args.last !== undefined;
            has.before = args.before !== undefined;
            const { applyPlan: _first, ...first } = args.first;
            const capped: typeof args = {
              ...args,
              first: {
                ...first,
                description: build.wrapDescription(`Only read the first \`n\` values of the set (at most ${max}). Without \`first\` and \`last\`, at most ${max} values are read.`, 'arg'),
              },
            };
            if (args.last) {
              const { applyPlan: _last, ...last } = args.last;
              capped.last = { ...last, description: build.wrapDescription(`Only read the last \`n\` values of the set (at most ${max}).`, 'arg') };
            }
            return capped;
          },
        },
      },
    },
  };
}
