// Where the repository's files are, wherever the process was started from.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const SQL_DIR = path.join(ROOT, 'sql');
export const MIGRATIONS_DIR = path.join(ROOT, 'migrations');
export const GMRC = path.join(ROOT, '.gmrc');
export const SCHEMA_GRAPHQL = path.join(ROOT, 'schema.graphql');
export const SECURITY_SURFACE = path.join(ROOT, 'security-surface.sql');
export const EMAIL_TEMPLATES_DIR = path.join(ROOT, 'templates', 'email');
