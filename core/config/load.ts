import { stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cosmiconfig } from 'cosmiconfig';
import type { z } from 'zod';
import { ConfigError, messageOf } from '../errors.js';
import type { PluginSpec } from '../plugins/types.js';
import { configSchema, type ResolvedConfig, type UserConfig } from './schema.js';

export const CONFIG_FILE_NAMES = ['upnpd.config.js', 'upnpd.config.mjs', 'upnpd.config.cjs'];

export interface LoadConfigOptions {
  /** `--config FILE`; otherwise upnpd.config.{js,mjs,cjs} is searched from `cwd` upwards. */
  readonly configFile?: string;
  readonly cwd?: string;
  /** Values from command-line flags; they win over the file. */
  readonly overrides?: Partial<UserConfig>;
  /** For messages: the flag each overridden key came from, e.g. { httpPort: '--http-port' }. */
  readonly flagNames?: Partial<Record<keyof UserConfig, string>>;
}

/** Finds, loads and validates the configuration. Throws ConfigError naming the file and key path. */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<ResolvedConfig> {
  const { fileConfig, source } = await readConfigFile(options);
  const overrides = options.overrides ?? {};
  const merged: Record<string, unknown> = { ...fileConfig, ...withoutUndefined(overrides) };

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

  const plugins = validatePluginOptions(parsed.data.plugins.filter((p): p is PluginSpec => Boolean(p)), source);
  return {
    ...parsed.data,
    plugins,
    source,
    lanFromCommandLine: overrides.lan !== undefined && overrides.lan.length > 0,
  };
}

async function readConfigFile(options: LoadConfigOptions): Promise<{ fileConfig: Record<string, unknown>; source: string }> {
  const explorer = cosmiconfig('upnpd', {
    searchPlaces: CONFIG_FILE_NAMES,
    searchStrategy: 'global',
    cache: false,
    loaders: { '.js': loadFresh, '.mjs': loadFresh, '.cjs': loadFresh },
  });
  let result;
  const where = options.configFile ? resolve(options.cwd ?? process.cwd(), options.configFile) : undefined;
  try {
    result = where ? await explorer.load(where) : await explorer.search(options.cwd ?? process.cwd());
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (where && code === 'ENOENT') throw new ConfigError(`${where}: no such file`);
    throw new ConfigError(`${where ?? 'upnpd.config.js'}: cannot load: ${messageOf(err)}`);
  }
  if (!result) return { fileConfig: {}, source: '(no config file)' };
  const config: unknown = result.config;
  if (config === undefined || config === null) return { fileConfig: {}, source: result.filepath };
  if (typeof config !== 'object' || Array.isArray(config)) {
    throw new ConfigError(`${result.filepath}: must export an object (export default defineConfig({...}))`);
  }
  return { fileConfig: config as Record<string, unknown>, source: result.filepath };
}

const require = createRequire(import.meta.url);

/**
 * Loads a JavaScript config file as it is on disk now. cosmiconfig's own loader uses a plain
 * `import()`, which Node caches for the life of the process, so a SIGHUP reload would see the old
 * file: import by modification time instead (and drop CommonJS's cache entry).
 */
async function loadFresh(filepath: string): Promise<unknown> {
  const { mtimeMs } = await stat(filepath);
  delete require.cache[filepath];
  const module = (await import(`${pathToFileURL(filepath).href}?mtime=${mtimeMs}`)) as { default?: unknown };
  return module.default ?? module;
}

function validatePluginOptions(specs: PluginSpec[], source: string): PluginSpec[] {
  const problems: string[] = [];
  const validated = specs.map((spec, index) => {
    if (!spec.optionsSchema) return spec;
    const parsed = spec.optionsSchema.safeParse(spec.options);
    if (parsed.success) return { ...spec, options: parsed.data };
    problems.push(formatIssues(parsed.error.issues, () => source, `plugins[${index}] (${spec.name})`));
    return spec;
  });
  if (problems.length > 0) throw new ConfigError(problems.join('\n'));
  return validated;
}

function formatIssues(issues: readonly z.core.$ZodIssue[], sourceOf: (path: PropertyKey[]) => string, prefix?: string): string {
  const line = (path: PropertyKey[], message: string) =>
    `${sourceOf(path)}: ${[prefix, pathToString(path)].filter(Boolean).join('.') || '(top level)'}: ${message}`;
  return issues
    .flatMap((issue) => {
      const path = issue.path as PropertyKey[];
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
