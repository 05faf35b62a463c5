/**
 * Config settings for tests that drive the daemon hard from one client (one source address): the
 * per-client bounds and quota would otherwise refuse what the test is about (durability, crashes).
 * The bounds and policies have tests of their own.
 */
export const ONE_CLIENT_LOAD = {
  limits: { connectionsPerClient: 128, stateChanges: { burst: 100_000, perSecond: 100_000 } },
  quota: { perClient: 1_000_000, total: 1_000_000 },
} as const;

/**
 * An upnpd.config.mjs text with ONE_CLIENT_LOAD, importing upnpd from `publicApi`, plus `plugins`
 * (factory calls as source text, e.g. `nftables({...})`, whose factory names are imported too).
 */
export function oneClientLoadConfig(publicApi: string, plugins: readonly string[] = []): string {
  const factories = plugins.map((call) => /^(\w+)\(/.exec(call)?.[1]).filter((name): name is string => name !== undefined);
  return (
    `import { ${['defineConfig', 'quota', ...factories].join(', ')} } from ${JSON.stringify(publicApi)};\n` +
    `export default defineConfig({ limits: ${JSON.stringify(ONE_CLIENT_LOAD.limits)}, plugins: [${[`quota(${JSON.stringify(ONE_CLIENT_LOAD.quota)})`, ...plugins].join(', ')}] });\n`
  );
}
