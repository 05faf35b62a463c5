import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts', 'plugins/**/*.test.ts', 'core/**/*.test.ts', 'bench/test/**/*.test.ts'],
          exclude: ['test/netns/**', 'bench/test/netns/**', 'node_modules/**', 'dist/**'],
        },
      },
      {
        extends: true,
        test: {
          name: 'netns',
          include: ['test/netns/**/*.test.ts', 'bench/test/netns/**/*.test.ts'],
          // Namespace tests change kernel state: run files one at a time.
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
    ],
    testTimeout: 15_000,
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
