import type { TestProject } from 'vitest/node';
import { startPostgres } from './postgres-server.js';

/**
 * globalSetup of the `shared` project (vitest.config.ts): one PostgreSQL for the run, on a free
 * port in a temp dir (never the one on 5432); each test app makes its own database on it.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startPostgres();
  project.provide('postgresUrl', server.url);
  return () => server.stop();
}
