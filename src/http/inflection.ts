// Naming tweaks for the generated API.
// A mutation backed by a SQL function returns its result under a field named after the result's
// type (createOrganization { organization }, acceptInvitation { organizationMember },
// inviteMember { invitationToken }) instead of PostGraphile v5's generic `result`.
// A function can still choose its own name with the `@resultFieldName` smart tag.
export const MutationResultNamePlugin: GraphileConfig.Plugin = {
  name: 'AtriumMutationResultNamePlugin',
  version: '1.0.0',
  inflection: {
    replace: {
      functionMutationResultFieldName(previous, _options, details) {
        const tagged = details.resource.extensions?.tags?.resultFieldName;
        if (typeof tagged === 'string') return tagged;
        const name = details.returnGraphQLTypeName;
        if (!name || ['Boolean', 'String', 'Int', 'Float', 'UUID', 'Datetime', 'JSON', 'BigInt'].includes(name)) return previous!(details);
        return this.camelCase(name);
      },
    },
  },
};
