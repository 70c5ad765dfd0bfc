// Every tenant table's key is (organization_id, id), so PostGraphile's own fields for a row take
// both: `invoice(organizationId, rowId)`, `updateInvoice(input: { organizationId, rowId, patch })`.
// A request already works inside one organization (the one its token names: app.org_id, checked
// by every policy), where `id` alone is unique; so this plugin declares `id` unique on every such
// table (as the `@unique id` smart tag would), and PostGraphile adds the fields that take the row
// id alone: `invoiceByRowId(rowId)`, `updateInvoiceByRowId(input: { rowId, patch })`,
// `deleteInvoiceByRowId`. Row-level security reads them exactly as the two-key ones: a row of
// another organization is not found, like an id that does not exist.
//
// The planner still uses the (organization_id, id) index: the policy's `organization_id = …`
// condition supplies the first column.
import type {} from 'postgraphile/graphile-build-pg';

export const RowIdUniquesPlugin: GraphileConfig.Plugin = {
  name: 'AtriumRowIdUniquesPlugin',
  version: '0.0.0',
  // Before the plugin that turns `@unique` tags into constraints reads them.
  before: ['PgFakeConstraintsPlugin'],
  gather: {
    hooks: {
      pgIntrospection_introspection(_info, event) {
        for (const pgClass of event.introspection.classes) {
          if (pgClass.getNamespace()?.nspname !== 'app_public' || !['r', 'p'].includes(pgClass.relkind)) continue;
          const primaryKey = pgClass.getConstraints().find((constraint) => constraint.contype === 'p');
          const keys = primaryKey?.conkey?.map((attnum) => pgClass.getAttributes().find((attribute) => attribute.attnum === attnum)?.attname);
          if (keys?.length !== 2 || keys[0] !== 'organization_id' || keys[1] !== 'id') continue;
          const tags = pgClass.getTags() as Record<string, unknown>;
          const unique = tags.unique;
          tags.unique = unique === undefined ? 'id' : [...(Array.isArray(unique) ? unique : [unique]), 'id'];
        }
      },
    },
  },
};
