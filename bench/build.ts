import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
/** Written by every build (tsc rewrites all outputs), so its time is the build's. */
const BUILD_STAMP = join(REPO_ROOT, 'dist/app/cli.js');
const SOURCE_DIRS = ['app', 'core', 'plugins'];
const BUILD_TIMEOUT_MS = 180_000;

/** Why dist/ must be rebuilt before upnpd can be measured, or undefined when it is up to date. */
export function buildNeeded(): string | undefined {
  if (!existsSync(BUILD_STAMP)) return 'dist/ has not been built';
  const built = statSync(BUILD_STAMP).mtimeMs;
  const newer = SOURCE_DIRS.flatMap((dir) => sourceFiles(join(REPO_ROOT, dir))).find((file) => statSync(file).mtimeMs > built);
  return newer ? `${newer.slice(REPO_ROOT.length)} is newer than dist/` : undefined;
}

/** `npm run build`; rejects with the compiler's output if it fails. */
export async function build(): Promise<void> {
  const r = await execa('npm', ['run', 'build'], { cwd: REPO_ROOT, reject: false, all: true, timeout: BUILD_TIMEOUT_MS });
  if (r.exitCode !== 0) throw new Error(`npm run build failed (exit ${r.exitCode}):\n${r.all}`);
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts'))
    .map((entry) => join(entry.parentPath, entry.name));
}
