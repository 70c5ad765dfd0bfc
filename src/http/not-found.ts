// Updating a row you cannot see answers NOT_FOUND, exactly as a row that does not exist.
//
// PostGraphile's generated `updateX` / `updateXById` mutations run one `UPDATE … WHERE <key>`
// under row-level security; when it changes no row — another tenant's id, a random id, a row your
// role may not read or write — @dataplan/pg returns null and the client gets `{ x: null }` and no
// error, as if something had happened. This plugin wraps the plan of every update mutation
// (graphile-build-pg marks them `isPgUpdateMutation`, so new tables are covered) with a step that
// turns "no row" into the catalogue's NOT_FOUND. The same UPDATE runs either way; the answer, its
// code and its message do not depend on whose id it was. Deletes already fail in that case, with
// an error that src/http/errors.ts maps to the same NOT_FOUND.
import { lambda, object, type ObjectStep, type Step } from 'postgraphile/grafast';
import type { ErrorCatalog } from './errors.ts';

export function makeNotFoundPlugin(errors: ErrorCatalog): GraphileConfig.Plugin {
  return {
    name: 'AtriumNotFoundPlugin',
    version: '1.0.0',
    description: 'Update mutations that change no row answer NOT_FOUND',
    schema: {
      hooks: {
        GraphQLObjectType_fields_field(field, _build, context) {
          const plan = field.plan;
          if (!context.scope.isPgUpdateMutation || !plan) return field;
          return {
            ...field,
            plan($parent, fieldArgs, info) {
              const $payload = plan($parent, fieldArgs, info) as ObjectStep<{ result: Step }>;
              const $row = $payload.getStepForKey('result');
              const $found = lambda($row, (row) => {
                if (row == null) throw errors.error('NOT_FOUND');
                return true;
              });
              // The payload's fields read `result` as before; `found` makes the payload an error
              // when no row was updated.
              return object({ result: $row, found: $found });
            },
          };
        },
      },
    },
  };
}
