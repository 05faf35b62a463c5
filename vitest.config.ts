import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const source = (path: string) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  // The shipped plugins import upnpd's public API by its package name, as third-party plugins do;
  // tests run them against the sources (the build keeps the names, resolved to dist/ by Node).
  resolve: {
    alias: [
      { find: /^upnpd$/, replacement: source('./core/index.ts') },
      { find: /^upnpd\/backend$/, replacement: source('./core/backend-kit.ts') },
      { find: /^upnpd\/testing$/, replacement: source('./core/testing/index.ts') },
    ],
  },
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
