import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globals: false,
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: integration files spawn redis-server and child services; keep parallelism modest.
    maxWorkers: 2,
    pool: 'forks',
  },
});
