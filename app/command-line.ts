import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { LoadConfigOptions } from '../core/config/load.js';
import type { UserConfig } from '../core/config/schema.js';
import { ConfigError, messageOf } from '../core/errors.js';

/** The daemon's flags, shared by the daemon, `upnpd doctor` and `upnpd check`. */
const OPTIONS = {
  config: { type: 'string' },
  lan: { type: 'string', multiple: true },
  wan: { type: 'string' },
  'external-ip': { type: 'string' },
  backend: { type: 'string' },
  'dry-run': { type: 'boolean' },
  'http-port': { type: 'string' },
  'no-ipv6': { type: 'boolean' },
  'state-dir': { type: 'string' },
  'runtime-dir': { type: 'string' },
  'admin-listen': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean' },
  version: { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];

/** Flag → config key, so that errors name the flag the user typed. */
const FLAG_NAMES: Partial<Record<keyof UserConfig, string>> = {
  lan: '--lan',
  wan: '--wan',
  externalIp: '--external-ip',
  backend: '--backend',
  dryRun: '--dry-run',
  httpPort: '--http-port',
  ipv6: '--no-ipv6',
  stateDir: '--state-dir',
  runtimeDir: '--runtime-dir',
  admin: '--admin-listen',
  logLevel: '--log-level',
};

export interface CommandLine {
  readonly help: boolean;
  readonly version: boolean;
  readonly load: LoadConfigOptions;
}

/** Parses argv into config-loading options. Throws ConfigError for unknown or malformed flags. */
export function parseCommandLine(argv: readonly string[]): CommandLine {
  let values;
  try {
    ({ values } = parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new ConfigError(`command line: ${messageOf(err)}`);
  }
  const number = (v: string | undefined) => (v === undefined ? undefined : /^\d+$/.test(v) ? Number(v) : v);
  const overrides = {
    lan: values.lan,
    wan: values.wan,
    externalIp: values['external-ip'],
    backend: values.backend,
    dryRun: values['dry-run'],
    httpPort: number(values['http-port']),
    ipv6: values['no-ipv6'] ? false : undefined,
    stateDir: values['state-dir'],
    runtimeDir: values['runtime-dir'],
    admin: values['admin-listen'] === undefined ? undefined : { listen: values['admin-listen'] },
    logLevel: values['log-level'],
  } as Partial<UserConfig>;
  return {
    help: values.help ?? false,
    version: values.version ?? false,
    load: { configFile: values.config, overrides, flagNames: FLAG_NAMES },
  };
}
