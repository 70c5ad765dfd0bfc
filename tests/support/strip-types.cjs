// Jest transform: TypeScript → JavaScript by erasing types (node:module stripTypeScriptTypes),
// the same thing Node does when it runs src/*.ts directly. Only erasable syntax is allowed
// (tsconfig.json: erasableSyntaxOnly), so nothing else needs compiling.
const { createHash } = require('node:crypto');
const { stripTypeScriptTypes } = require('node:module');

module.exports = {
  process(source, filename) {
    return { code: stripTypeScriptTypes(source, { mode: 'strip', sourceUrl: filename }) };
  },
  getCacheKey(source, filename) {
    return createHash('sha256').update(process.version).update(filename).update(source).digest('hex');
  },
};
