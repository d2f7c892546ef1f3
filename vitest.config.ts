// vitest.config.ts: native addons run in the 'forks' pool (threads can crash native modules).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: process.env.CRATE_JSON_REPORT ? ['default', ['json', { outputFile: process.env.CRATE_JSON_REPORT }]] : ['default'],
  },
});
