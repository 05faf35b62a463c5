import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';

/** A fresh temporary directory for each test of the enclosing describe (or file), removed after it. */
export function useTempDir(prefix: string): { readonly path: string } {
  let path: string | undefined;
  beforeEach(() => {
    path = mkdtempSync(join(tmpdir(), prefix));
  });
  afterEach(() => {
    if (path) rmSync(path, { recursive: true, force: true });
    path = undefined;
  });
  return {
    get path(): string {
      if (!path) throw new Error('useTempDir: the directory exists only while a test runs');
      return path;
    },
  };
}
