import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import Module, { createRequire, register } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cosmiconfig } from 'cosmiconfig';
import type { z } from 'zod';
import { ConfigError, messageOf } from '../errors.js';
import type { AnyPluginSpec } from '../plugins/types.js';
import { configSchema, type ResolvedConfig, type UserConfig } from './schema.js';

export const CONFIG_FILE_NAMES = ['upnpd.config.js', 'upnpd.config.mjs', 'upnpd.config.cjs'];

/** How long loading a config file may take: its top-level awaits and exported promise included. */
export const CONFIG_LOAD_TIMEOUT_MS = 30_000;

/** Where a config file is looked for after the working directory and its parents. */
export const SYSTEM_CONFIG_DIR = '/etc/upnpd';

export interface LoadConfigOptions {
  /**
   * `--config FILE`; otherwise the first upnpd.config.{js,mjs,cjs} found in `cwd`, its parents up
   * to the root, then `systemConfigDir`.
   */
  readonly configFile?: string;
  readonly cwd?: string;
  /** `/etc/upnpd` unless a test names another. */
  readonly systemConfigDir?: string;
  /**
   * Told of each directory of the search that could not be looked into (e.g. EACCES): it is
   * skipped, never fatal. The logger does not exist yet when the config is read.
   */
  readonly onSkip?: (dir: string, error: Error) => void;
  /** How the search looks at a path; `fs.stat` unless a test injects another. */
  readonly stat?: (path: string) => Promise<{ isFile(): boolean }>;
  /** How long a config file may take to load (an async config); CONFIG_LOAD_TIMEOUT_MS unless a test names another. */
  readonly loadTimeoutMs?: number;
  /** Values from command-line flags; they win over the file. */
  readonly overrides?: Partial<UserConfig>;
  /** For messages: the flag each overridden key came from, e.g. { httpPort: '--http-port' }. */
  readonly flagNames?: Partial<Record<keyof UserConfig, string>>;
}

/** Finds, loads and validates the configuration. Throws ConfigError naming the file and key path. */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<ResolvedConfig> {
  const { fileConfig, source } = await readConfigFile(options);
  const overrides = options.overrides ?? {};
  const merged: Record<string, unknown> = { ...fileConfig };
  // A flag sets one key of a section (--admin-listen: admin.listen) and keeps the file's others.
  for (const [key, value] of Object.entries(withoutUndefined(overrides))) {
    const fromFile = fileConfig[key];
    merged[key] = isPlainObject(value) && isPlainObject(fromFile) ? { ...fromFile, ...value } : value;
  }

  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) {
    throw new ConfigError(
      formatIssues(parsed.error.issues, (path) => {
        const top = path[0] as keyof UserConfig | undefined;
        const flag = top !== undefined && top in withoutUndefined(overrides) ? options.flagNames?.[top] : undefined;
        return flag ? `command line ${flag}` : source;
      }),
    );
  }

  const listed = parsed.data.plugins.flatMap((spec, index) => (spec ? [{ spec, index }] : []));
  const pluginIndexes = listed.map((entry) => entry.index);
  const plugins = parsePluginOptions(
    listed.map((entry) => entry.spec),
    pluginIndexes,
    source,
  );
  return {
    ...parsed.data,
    plugins,
    pluginIndexes,
    source,
    lanFromCommandLine: overrides.lan !== undefined && overrides.lan.length > 0,
    flags: Object.fromEntries(Object.keys(withoutUndefined(overrides)).map((key) => [key, options.flagNames?.[key as keyof UserConfig] ?? key])),
  };
}

async function readConfigFile(options: LoadConfigOptions): Promise<{ fileConfig: Record<string, unknown>; source: string }> {
  // cosmiconfig only loads: its search cannot add /etc/upnpd and fails on an unreadable directory.
  const explorer = cosmiconfig('upnpd', {
    cache: false,
    loaders: Object.fromEntries(
      ['.js', '.mjs', '.cjs'].map((ext) => [ext, (file: string) => loadFresh(file, options.loadTimeoutMs ?? CONFIG_LOAD_TIMEOUT_MS)]),
    ),
  });
  const cwd = options.cwd ?? process.cwd();
  const where = options.configFile ? resolve(cwd, options.configFile) : await findConfigFile(cwd, options);
  if (!where) return { fileConfig: {}, source: '(no config file)' };
  let result;
  try {
    result = await explorer.load(where);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (options.configFile && code === 'ENOENT') throw new ConfigError(`${where}: no such file`);
    throw new ConfigError(`${where}: cannot load: ${messageOf(err)}`);
  }
  // cosmiconfig gives no result for an empty file; the loader wraps what the module exports.
  const config = (result?.config as LoadedModule | undefined)?.exported;
  if (config === undefined) throw new ConfigError(`${where}: exports no configuration (export default defineConfig({...}))`);
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new ConfigError(`${where}: must export an object (export default defineConfig({...}))`);
  }
  return { fileConfig: config as Record<string, unknown>, source: where };
}

/**
 * The first CONFIG_FILE_NAMES file in `cwd`, each parent up to the root, then the system config
 * directory. A directory that cannot be looked into is skipped (reported to `onSkip`).
 */
async function findConfigFile(cwd: string, options: LoadConfigOptions): Promise<string | undefined> {
  const statOf = options.stat ?? stat;
  const dirs: string[] = [];
  // Each step drops one path component, so this ends at the root.
  for (let dir = resolve(cwd); !dirs.includes(dir); dir = dirname(dir)) dirs.push(dir);
  const systemDir = resolve(options.systemConfigDir ?? SYSTEM_CONFIG_DIR);
  if (!dirs.includes(systemDir)) dirs.push(systemDir);

  for (const dir of dirs) {
    for (const name of CONFIG_FILE_NAMES) {
      const file = join(dir, name);
      try {
        if ((await statOf(file)).isFile()) return file;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') continue;
        options.onSkip?.(dir, err instanceof Error ? err : new Error(String(err)));
        break;
      }
    }
  }
  return undefined;
}

const require = createRequire(import.meta.url);

/**
 * Loads a JavaScript config file as it is on disk now. cosmiconfig's own loader uses a plain
 * `import()`, which Node caches for the life of the process, so a SIGHUP reload would see the old
 * file: import by modification time instead (and drop CommonJS's cache entry). Files the config
 * imports are read once: Node keeps them for the life of the process (a change needs a restart).
 *
 * A config that imports `upnpd` from where no copy of it is installed (`/etc/upnpd/`, after
 * `npm link`) fails to load; only then is the fallback of resolve-upnpd.ts registered and the
 * file loaded again. Only then, because Node 20 runs module hooks in a thread of their own, with
 * an isolate of its own: about 8 MB more resident memory for the life of the process (measured:
 * a dry-run daemon 71.7 MB with its config beside a `node_modules/upnpd`, 79.2 MB with the same
 * config in /tmp). A `node_modules/upnpd` link beside the config avoids it (README, "Install").
 */
async function loadFresh(filepath: string, timeoutMs: number): Promise<LoadedModule> {
  const { mtimeMs } = await stat(filepath);
  const load = async (attempt: string): Promise<LoadedModule> => {
    delete require.cache[filepath];
    // A CommonJS file's module.exports is its default export; an ES module without one exports no configuration.
    return importSettled(`${pathToFileURL(filepath).href}?mtime=${mtimeMs}${attempt}`, timeoutMs);
  };
  try {
    return await load('');
  } catch (err) {
    if (selfResolutionRegistered || !upnpdNotFound(err)) throw err;
    registerSelfResolution();
    // Under a URL of its own: Node keeps the failed load's module record.
    return load('&resolve=upnpd');
  }
}

/**
 * Imports a config module and settles its default export: an async config (a top-level await, a
 * default export that is a promise) is what it resolves to, and its rejection is the load's error.
 * Rejections the module left unhandled while it loaded are its errors too, rather than a crash with
 * a stack trace: Node 20, for one, reports a CommonJS package that throws while an ES module
 * imports it (a `require` of a module not installed) a second time that way, after the import's
 * own rejection. A load that has not settled after `timeoutMs` fails (otherwise a top-level await
 * that never settles ends the process with status 13 and no word).
 */
async function importSettled(url: string, timeoutMs: number): Promise<LoadedModule> {
  const unhandled: unknown[] = [];
  const collect = (reason: unknown) => void unhandled.push(reason);
  process.on('unhandledRejection', collect);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new Error(`did not finish loading in ${timeoutMs / 1000} s (a top-level await or an exported promise that never settles)`)),
      timeoutMs,
    );
  });
  try {
    const load = async () => ({ exported: await ((await import(url)) as { default?: unknown }).default });
    const loaded = await Promise.race([load(), timeout]);
    // Node reports unhandled rejections after the microtasks of a turn: wait for the next one.
    await new Promise((resolve) => setImmediate(resolve));
    if (unhandled.length > 0) throw unhandled[0];
    return loaded;
  } finally {
    clearTimeout(timer);
    setImmediate(() => process.off('unhandledRejection', collect));
  }
}

/**
 * What a config file's loader hands cosmiconfig: the default export, wrapped so that cosmiconfig
 * neither reads an undefined or null export as "no file" nor looks into the configuration itself.
 */
interface LoadedModule {
  readonly exported: unknown;
}

/** Whether a load failed because `upnpd` (or `upnpd/…`) could not be found from the config file. */
function upnpdNotFound(err: unknown): boolean {
  const { code, message } = err as NodeJS.ErrnoException;
  return (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && /['"]upnpd(?:\/[^'"]*)?['"]/.test(message ?? '');
}

let selfResolutionRegistered = false;

/**
 * Lets a config file anywhere import or require `upnpd` (see resolve-upnpd.ts); once per process.
 * `require` in a `.cjs` config does not go through the ES module hooks: its resolution falls back
 * the same way, to this package's own entries.
 */
function registerSelfResolution(): void {
  if (selfResolutionRegistered) return;
  selfResolutionRegistered = true;
  // Compiled, the hooks sit beside this file; run from the TypeScript sources (the tests) there is
  // no .js to give the hooks thread, and the sources resolve `upnpd` by the repository's own name.
  const hooks = new URL('./resolve-upnpd.js', import.meta.url);
  if (existsSync(fileURLToPath(hooks))) register(hooks, { data: { selfURL: import.meta.url } });
  const loader = Module as unknown as { _resolveFilename: (request: string, ...rest: unknown[]) => string };
  const resolveFilename = loader._resolveFilename;
  loader._resolveFilename = function (request, ...rest) {
    try {
      return resolveFilename.call(this, request, ...rest);
    } catch (err) {
      if ((request !== 'upnpd' && !request.startsWith('upnpd/')) || (err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
      return require.resolve(request);
    }
  };
}

/**
 * Parses each listed plugin's options with its schema, here, so that a mistake stops the start with
 * the file and key path. The schema is consumed: a spec without one holds parsed options, which is
 * how the composition root knows not to parse them again.
 */
function parsePluginOptions(specs: AnyPluginSpec[], indexes: readonly number[], source: string): AnyPluginSpec[] {
  const problems: string[] = [];
  const validated = specs.map((spec, index): AnyPluginSpec => {
    if (!spec.optionsSchema) return spec;
    const parsed = spec.optionsSchema.safeParse(spec.options);
    if (parsed.success) return { ...spec, options: parsed.data, optionsSchema: undefined };
    problems.push(formatIssues(parsed.error.issues, () => source, `plugins[${indexes[index]}] (${spec.name})`));
    return spec;
  });
  if (problems.length > 0) throw new ConfigError(problems.join('\n'));
  return validated;
}

/** Zod issues as lines naming the source and the key path. */
export function formatIssues(issues: readonly z.core.$ZodIssue[], sourceOf: (path: PropertyKey[]) => string, prefix?: string): string {
  const line = (path: PropertyKey[], message: string) =>
    `${sourceOf(path)}: ${[prefix, pathToString(path)].filter(Boolean).join('.') || '(top level)'}: ${message}`;
  return issues
    .flatMap((issue) => {
      const path = issue.path;
      if (issue.code === 'unrecognized_keys') return issue.keys.map((key) => line([...path, key], 'unknown key'));
      return [line(path, issue.message)];
    })
    .join('\n');
}

function pathToString(path: PropertyKey[]): string {
  return path.reduce<string>((acc, part) => (typeof part === 'number' ? `${acc}[${part}]` : acc ? `${acc}.${String(part)}` : String(part)), '');
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
