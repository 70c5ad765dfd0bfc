// Configuration is validated at start, and every problem names its variable.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, test } from '@jest/globals';
import { ConfigError, loadConfig } from '../src/config.ts';
import { ROOT } from '../src/paths.ts';

const problems = (env: Record<string, string>) => {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
};

describe('loadConfig', () => {
  test('the defaults work for development with no variables at all', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ nodeEnv: 'development', port: 3000, graphiql: true, database: { url: undefined }, worker: { inline: true } });
  });

  test('each bad value is reported with its variable name and what is wrong', () => {
    const found = problems({ PORT: 'eighty', NODE_ENV: 'staging', DATABASE_URL: 'mysql://x/y', JWT_SECRET: 'short', WORKER_CONCURRENCY: '0', DATABASE_VISITOR: 'Bad-Name', LOG_LEVEL: 'loud' });
    const text = found.join('\n');
    for (const name of ['PORT', 'NODE_ENV', 'DATABASE_URL', 'JWT_SECRET', 'WORKER_CONCURRENCY', 'DATABASE_VISITOR', 'LOG_LEVEL']) expect(text).toContain(name);
    expect(found).toHaveLength(7);
  });

  test('production needs a real database and a token secret, and never serves GraphiQL', () => {
    expect(problems({ NODE_ENV: 'production' }).join('\n')).toMatch(/DATABASE_URL is required[\s\S]*JWT_SECRET is required/);
    const production = { NODE_ENV: 'production', DATABASE_URL: 'postgres://u:p@db/atrium', JWT_SECRET: 'x'.repeat(40), SMTP_URL: 'smtp://mail.example.com:587', APP_URL: 'https://app.example.com' };
    const config = loadConfig(production);
    expect(config.graphiql).toBe(false);
    expect(config.corsOrigins).toEqual([]);
    expect(problems({ ...production, GRAPHIQL: 'true' })).toEqual(['GRAPHIQL cannot be enabled when NODE_ENV=production']);
  });

  test('PAGE_SIZE_MAX: 100 by default, an integer from 1 to 10000', () => {
    expect(loadConfig({}).pageSizeMax).toBe(100);
    expect(loadConfig({ PAGE_SIZE_MAX: '25' }).pageSizeMax).toBe(25);
    for (const bad of ['0', '10001', 'lots', '2.5']) expect(problems({ PAGE_SIZE_MAX: bad })).toEqual([`PAGE_SIZE_MAX="${bad}" must be an integer from 1 to 10000`]);
  });

  test('the four roles must be distinct', () => {
    expect(problems({ DATABASE_OWNER: 'same', DATABASE_WORKER: 'same' }).join()).toMatch(/five different roles/);
  });
});

test('npm start with a bad variable exits with status 2 and says which variable is wrong', () => {
  const result = spawnSync(process.execPath, [path.join(ROOT, 'src/cli.ts'), 'start'], { env: { ...process.env, PORT: 'abc', DATABASE_URL: '' }, encoding: 'utf8', timeout: 30_000 });
  expect(result.status).toBe(2);
  expect(result.stderr).toContain('PORT="abc" must be an integer');
  expect(result.stderr).toContain('.env.example');
});
