// Naming tweaks for the generated API.
//
// 1. A mutation backed by a SQL function returns its result under a field named after the result's
//    type (createOrganization { organization }, acceptInvitation { organizationMember },
//    inviteMember { invitationToken }) instead of PostGraphile v5's generic `result`.
//    A function can still choose its own name with the `@resultFieldName` smart tag.
//
// 2. Relations between tenant tables ignore the tenant column. Every tenant table's primary key is
//    (organization_id, id) and every foreign key between tenant tables is composite, e.g.
//    invoices (organization_id, client_company_id) → client_companies (organization_id, id).
//    Named from all their columns, these relations came out as Invoice.organizationClientCompany and
//    ClientCompany.invoicesByOrganizationIdAndClientCompanyId. The relation inflectors below name
//    such a key as if it were only its other column(s) (client_company_id), so the usual simplified
//    names apply: Invoice.clientCompany, ClientCompany.invoices, Milestone.tasks next to
//    OrganizationMember.tasksByAssigneeMemberId. A foreign key on organization_id alone (to
//    organizations) still gives `organization`. The `@fieldName`/`@foreignFieldName` smart tags
//    still win.

/** The tenant column shared by both sides of every composite tenant foreign key. */
const TENANT_COLUMN = 'organization_id';

type RelationDetails = GraphileBuild.PgRelationsPluginRelationDetails;

const tenantlessDetails = new WeakMap<object, RelationDetails>();

/**
 * The same relation details, except that a foreign key of more than one column pairing
 * organization_id with organization_id is shown without that pair, so the previous inflectors
 * (@graphile/simplify-inflection, then graphile-build-pg) name it from its other columns only.
 * Any other relation is returned unchanged.
 */
function withoutTenantColumn(details: RelationDetails): RelationDetails {
  const { registry, codec, relationName } = details;
  const relations = registry.pgRelations[codec.name];
  const relation = relations?.[relationName];
  if (!relation) return details;
  const cached = tenantlessDetails.get(relation);
  if (cached) return cached;
  const { localAttributes, remoteAttributes } = relation;
  if (localAttributes.length < 2) return details;
  const keep = localAttributes.map((local, i) => !(local === TENANT_COLUMN && remoteAttributes[i] === TENANT_COLUMN));
  if (keep.every(Boolean) || !keep.some(Boolean)) return details;
  const tenantless = {
    ...relation,
    localAttributes: localAttributes.filter((_, i) => keep[i]),
    remoteAttributes: remoteAttributes.filter((_, i) => keep[i]),
  };
  const modified: RelationDetails = {
    ...details,
    registry: {
      ...registry,
      pgRelations: { ...registry.pgRelations, [codec.name]: { ...relations, [relationName]: tenantless } },
    } as RelationDetails['registry'],
  };
  tenantlessDetails.set(relation, modified);
  return modified;
}

export const MutationResultNamePlugin: GraphileConfig.Plugin = {
  name: 'AtriumMutationResultNamePlugin',
  version: '1.1.0',
  // Wrap simplify-inflection's relation inflectors, so they see the tenant-less keys.
  after: ['PgSimplifyInflectionPlugin'],
  inflection: {
    replace: {
      functionMutationResultFieldName(previous, _options, details) {
        const tagged = details.resource.extensions?.tags?.resultFieldName;
        if (typeof tagged === 'string') return tagged;
        const name = details.returnGraphQLTypeName;
        if (!name || ['Boolean', 'String', 'Int', 'Float', 'UUID', 'Datetime', 'JSON', 'BigInt'].includes(name)) return previous!(details);
        return this.camelCase(name);
      },
      // A key column named after the table without its `organization_` prefix still names the
      // table, for backward relations: time_entries.member_id → organization_members gives
      // OrganizationMember.timeEntries (not timeEntriesByMemberId), as it did before the tenant
      // column was ignored; owner_member_id still gives dealsByOwnerMemberId.
      _baseNameMatches(previous, _options, baseName, otherName) {
        return previous!(baseName, otherName) || previous!(`organization_${baseName}`, otherName);
      },
      // Forward relation: Invoice.clientCompany (was organizationClientCompany).
      singleRelation(previous, _options, details) {
        return previous!(withoutTenantColumn(details));
      },
      // Backward relation over a unique key: Proposal.contract (was contractByOrganizationIdAndProposalId).
      singleRelationBackwards(previous, _options, details) {
        return previous!(withoutTenantColumn(details));
      },
      // Backward relation, connection and list (manyRelationConnection/manyRelationList call this):
      // Invoice.invoiceLineItems (was invoiceLineItemsByOrganizationIdAndInvoiceId).
      _manyRelation(previous, _options, details) {
        return previous!(withoutTenantColumn(details));
      },
    },
  },
};
