/**
 * Module resolution hooks (`module.register`) for configuration files. A config file imports the
 * package by name (`import { defineConfig } from 'upnpd'`), as README shows, from wherever the admin
 * keeps it: `/etc/upnpd/upnpd.config.js`, which no `node_modules` lies above (`npm link` installs
 * upnpd in the global folder, which ES module resolution never looks in). When `upnpd` or
 * `upnpd/…` cannot be found from the importing file, it resolves to this running upnpd, as the
 * package's own files resolve it; a copy installed next to the config file still wins.
 */

interface ResolveContext {
  readonly parentURL?: string;
  readonly conditions: readonly string[];
  readonly importAttributes: Record<string, string>;
}
type NextResolve = (specifier: string, context?: Partial<ResolveContext>) => Promise<unknown>;

/** A URL inside this package, from which `upnpd` resolves by its own name (package self-reference). */
let selfURL: string | undefined;

export function initialize(data: { selfURL: string }): void {
  selfURL = data.selfURL;
}

export async function resolve(specifier: string, context: ResolveContext, nextResolve: NextResolve): Promise<unknown> {
  try {
    return await nextResolve(specifier, context);
  } catch (err) {
    const ours = specifier === 'upnpd' || specifier.startsWith('upnpd/');
    if (!ours || selfURL === undefined || (err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    return nextResolve(specifier, { ...context, parentURL: selfURL });
  }
}
