// The Amber preset offers `filter`, `condition` and `orderBy` only on indexed columns
// (graphile-build-pg's PgIndexBehaviorsPlugin), but it looks at the indexes of plain tables only:
// a partitioned table (app_public.activity_events, partitioned by month) would offer every column,
// and ordering ten million events by an unindexed column is a full sort. This plugin applies the
// same rule to partitioned tables, reading their partitioned indexes (a column is indexed when it
// is a key of an index without a predicate, as there).
import type {} from 'postgraphile/graphile-build-pg';

export const PartitionedIndexBehaviorsPlugin: GraphileConfig.Plugin = {
  name: 'AtriumPartitionedIndexBehaviorsPlugin',
  version: '0.0.0',
  after: ['smart-tags'],
  gather: {
    hooks: {
      pgCodecs_attribute(_info, event) {
        const { attribute, pgAttribute } = event;
        const table = pgAttribute.getClass();
        if (table?.relkind !== 'p') return;
        const indexed = table.getIndexes().some((index) => !index.indpred && index.getKeys().some((key) => key != null && key.attname === pgAttribute.attname));
        if (!indexed) {
          attribute.extensions ??= Object.create(null);
          if (!('isIndexed' in attribute.extensions!)) attribute.extensions!.isIndexed = false;
        }
      },
    },
  },
};
