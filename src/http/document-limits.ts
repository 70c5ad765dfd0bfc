// Bounded work per request: what a GraphQL document may ask for, known before it runs.
//
// Every document is measured after parsing and before the schema's own validation, and refused
// with QUERY_TOO_COMPLEX (HTTP 400; `extensions.limit`, `maximum` and `actual` say which limit
// and by how much) when it is above any of these (src/config.ts, GRAPHQL_MAX_*):
//
//   tokens      lexical tokens in the document (graphql-js stops parsing there): bounds the
//               parser's work and the size of the syntax tree
//   depth       nesting of fields (graphql-armor max-depth; fragments counted where spread)
//   aliases     aliased fields (graphql-armor max-aliases): the 1,500-alias flood
//   directives  directives (graphql-armor max-directives)
//   fields      field selections once fragments are expanded: bounds the planner's work and the
//               size of the operation plan kept in Grafast's cache
//   collections collection fields (any field with a `first` argument: connections and lists),
//               fragments expanded: each costs the planner far more than a plain field
//   rows        an estimate of the rows the document can return: each collection field (any
//               field with a `first` argument: connections and lists) reads `first`/`last` rows
//               when given as a literal, else a full page (PAGE_SIZE_MAX: a variable may ask for
//               that much, and no argument means that much, src/http/page-size.ts); nested
//               collections multiply; the document's rows are the sum over all its collections
//
// graphql-armor is used where its rule means what we need (depth, aliases, directives); its
// cost rule reads only literal `first` values and would price a connection without `first` at one
// row, so the row estimate is ours. The measures walk each fragment once (memoized) and never
// loop on fragment cycles (refused afterwards by the standard NoFragmentCyclesRule).
import { maxAliasesRule } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesRule } from '@escape.tech/graphql-armor-max-directives';
import {
  getNamedType,
  GraphQLError,
  isObjectType,
  isInterfaceType,
  Kind,
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLNamedType,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from 'postgraphile/graphql';
import type { GraphQLEdgeConfig } from '../config.ts';

/** The GRAPHQL_MAX_* limits of the configuration, and the page size. */
export type DocumentLimits = Pick<GraphQLEdgeConfig, 'maxTokens' | 'maxDepth' | 'maxAliases' | 'maxDirectives' | 'maxFields' | 'maxCollections' | 'maxRows'> & {
  /** The rows a collection returns without `first`/`last`, or with a variable (PAGE_SIZE_MAX). */
  pageSize: number;
};

export type LimitName = 'tokens' | 'depth' | 'aliases' | 'directives' | 'fields' | 'collections' | 'rows';

/** The environment variable that sets each limit, for messages a person can act on. */
export const LIMIT_VARIABLES: Record<LimitName, string> = {
  tokens: 'GRAPHQL_MAX_TOKENS',
  depth: 'GRAPHQL_MAX_DEPTH',
  aliases: 'GRAPHQL_MAX_ALIASES',
  directives: 'GRAPHQL_MAX_DIRECTIVES',
  fields: 'GRAPHQL_MAX_FIELDS',
  collections: 'GRAPHQL_MAX_COLLECTIONS',
  rows: 'GRAPHQL_MAX_ROWS',
};

const DESCRIBE: Record<LimitName, string> = {
  tokens: 'tokens',
  depth: 'levels of nesting',
  aliases: 'aliases',
  directives: 'directives',
  fields: 'fields (fragments expanded)',
  collections: 'collections (connections and lists, fragments expanded)',
  rows: 'rows (estimated: each collection reads `first`/`last` rows, or a full page without them; nested collections multiply)',
};

export const QUERY_TOO_COMPLEX = 'QUERY_TOO_COMPLEX';

/** The refusal of a document above a limit. */
export function tooComplex(limit: LimitName, maximum: number, actual: number | undefined, node?: OperationDefinitionNode): GraphQLError {
  const found = actual === undefined ? 'more' : String(actual);
  return new GraphQLError(`The document is too complex: it has ${found} ${DESCRIBE[limit]}, and at most ${maximum} are allowed (${LIMIT_VARIABLES[limit]}). Ask for less, or split it into several requests.`, {
    nodes: node ? [node] : undefined,
    extensions: { code: QUERY_TOO_COMPLEX, httpStatus: 400, limit, maximum, ...(actual === undefined ? {} : { actual }) },
  });
}

/** Fields, collections and estimated rows of one selection set (rows per row of its parent). */
interface Measure {
  fields: number;
  collections: number;
  rows: number;
}

/**
 * Measures the fields and rows of an operation. Fragments are measured once per type condition
 * and scaled: the rows of a selection grow linearly with the rows of its parent.
 */
export function measureOperation(schema: GraphQLSchema, fragments: Map<string, FragmentDefinitionNode>, operation: OperationDefinitionNode, pageSize: number): Measure {
  const fragmentMeasures = new Map<string, Measure>();
  const inProgress = new Set<string>();

  const literalInt = (value: { kind: string; value?: string } | undefined): number | undefined =>
    value?.kind === Kind.INT ? Number(value.value) : undefined;

  const measureSet = (set: SelectionSetNode, parentType: GraphQLNamedType | undefined): Measure => {
    const total: Measure = { fields: 0, collections: 0, rows: 0 };
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) {
        total.fields += 1;
        const fieldDef = parentType && (isObjectType(parentType) || isInterfaceType(parentType)) ? parentType.getFields()[selection.name.value] : undefined;
        let multiplier = 1;
        if (fieldDef?.args.some((a) => a.name === 'first')) {
          const args = new Map(selection.arguments?.map((a) => [a.name.value, a.value]));
          const asked = literalInt(args.get('first') as never) ?? literalInt(args.get('last') as never);
          // Negative or too large values are refused when the plan runs (src/http/page-size.ts).
          multiplier = asked === undefined ? pageSize : Math.max(0, Math.min(asked, pageSize));
          total.collections += 1;
          total.rows += multiplier;
        }
        if (selection.selectionSet) {
          const inner = measureSet(selection.selectionSet, fieldDef ? getNamedType(fieldDef.type) : undefined);
          total.fields += inner.fields;
          total.collections += inner.collections;
          total.rows += multiplier * inner.rows;
        }
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        const type = selection.typeCondition ? schema.getType(selection.typeCondition.name.value) ?? undefined : parentType;
        const inner = measureSet(selection.selectionSet, type);
        total.fields += inner.fields;
        total.collections += inner.collections;
        total.rows += inner.rows;
      } else {
        const name = selection.name.value;
        let inner = fragmentMeasures.get(name);
        if (!inner) {
          const fragment = fragments.get(name);
          if (!fragment || inProgress.has(name)) continue; // unknown or cyclic: refused by validation
          inProgress.add(name);
          inner = measureSet(fragment.selectionSet, schema.getType(fragment.typeCondition.name.value) ?? undefined);
          inProgress.delete(name);
          fragmentMeasures.set(name, inner);
        }
        total.fields += inner.fields;
        total.collections += inner.collections;
        total.rows += inner.rows;
      }
    }
    return total;
  };

  const root = operation.operation === 'query' ? schema.getQueryType() : operation.operation === 'mutation' ? schema.getMutationType() : schema.getSubscriptionType();
  return measureSet(operation.selectionSet, root ?? undefined);
}

/** Our rule: fields, collections and estimated rows of each operation of the document. */
function fieldsAndRowsRule(limits: DocumentLimits): ValidationRule {
  return (context: ValidationContext) => {
    const fragments = new Map<string, FragmentDefinitionNode>();
    for (const definition of context.getDocument().definitions) {
      if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
    }
    return {
      OperationDefinition(operation) {
        const { fields, collections, rows } = measureOperation(context.getSchema(), fragments, operation, limits.pageSize);
        if (fields > limits.maxFields) context.reportError(tooComplex('fields', limits.maxFields, fields, operation));
        else if (collections > limits.maxCollections) context.reportError(tooComplex('collections', limits.maxCollections, collections, operation));
        else if (rows > limits.maxRows) context.reportError(tooComplex('rows', limits.maxRows, rows, operation));
        return false; // nothing below needs visiting
      },
    };
  };
}

/** graphql-armor's "found N" in its message, when it exposes limits. */
const found = (error: GraphQLError): number | undefined => {
  const match = /found (\d+)/.exec(error.message);
  return match ? Number(match[1]) : undefined;
};

/**
 * The limit rules, run on their own before the schema's validation (they are linear in the
 * document; some standard rules are not, so a flood must be refused before those run).
 */
export function limitRules(limits: DocumentLimits): ValidationRule[] {
  const armor = <T>(limit: LimitName, maximum: number, rule: (options: T) => ValidationRule, options: T): ValidationRule =>
    (context) =>
      rule({
        ...options,
        n: maximum,
        exposeLimits: true,
        propagateOnRejection: false,
        onReject: [(_ctx: unknown, error: GraphQLError) => context.reportError(tooComplex(limit, maximum, found(error)))],
      } as T)(context);
  return [
    armor('depth', limits.maxDepth, maxDepthRule as never, { ignoreIntrospection: true, flattenFragments: true }),
    armor('aliases', limits.maxAliases, maxAliasesRule as never, { allowList: [] }),
    armor('directives', limits.maxDirectives, maxDirectivesRule as never, {}),
    fieldsAndRowsRule(limits),
  ];
}

/** Is `error` graphql-js's refusal of a document above `maxTokens`? */
export const isTokenLimitError = (error: GraphQLError): boolean => /Document contains more tha[nt] \d+ tokens/.test(error.message); // (graphql-js spells it "more that")

export type { DocumentNode };
