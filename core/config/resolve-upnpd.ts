/**
 * Module resolution hooks (`module.register`) for configuration files.
 *
 * - A config file imports the package by name (`import { defineConfig } from 'upnpd'`), as README
 *   shows, from wherever the admin keeps it: `/etc/upnpd/upnpd.config.js`, which no `node_modules`
 *   lies above (`npm link` installs upnpd in the global folder, which ES module resolution never
 *   looks in). When `upnpd` or `upnpd/…` cannot be found from the importing file, it resolves to
 *   this running upnpd, as the package's own files resolve it; a copy installed next to the config
 *   file still wins.
 * - A SIGHUP reload reads the config file again, and also the files of the admin's it imports
 *   (`import rules from './rules.mjs'`): Node keeps each module for the life of the process, so
 *   the load's marker (`?upnpd-load=N`, see load.ts) is carried from the config file to each file
 *   it imports, directly or not, except packages (`node_modules`) and upnpd itself, which stay
 *   the running ones.
 */

interface ResolveContext {
  readonly parentURL?: string;
  readonly conditions: readonly string[];
  readonly importAttributes: Record<string, string>;
}
interface Resolved {
  readonly url: string;
  readonly format?: string | null;
}
type NextResolve = (specifier: string, context?: Partial<ResolveContext>) => Promise<Resolved>;

/** The query parameter load.ts adds to the config file's URL, one value per load. */
export const LOAD_MARKER = 'upnpd-load';

/** A URL inside this package, from which `upnpd` resolves by its own name (package self-reference). */
let selfURL: string | undefined;
/** This package's root directory, as a URL ending in `/`. */
let packageRoot: string | undefined;

export function initialize(data: { selfURL: string; packageRoot: string }): void {
  selfURL = data.selfURL;
  packageRoot = data.packageRoot;
}

export async function resolve(specifier: string, context: ResolveContext, nextResolve: NextResolve): Promise<Resolved> {
  const resolved = await resolveUpnpd(specifier, context, nextResolve);
  const load = context.parentURL?.startsWith('file:') ? new URL(context.parentURL).searchParams.get(LOAD_MARKER) : null;
  if (load === null || !resolved.url.startsWith('file:') || resolved.url.includes('/node_modules/')) return resolved;
  if (packageRoot !== undefined && resolved.url.startsWith(packageRoot)) return resolved;
  const url = new URL(resolved.url);
  url.searchParams.set(LOAD_MARKER, load);
  return { ...resolved, url: url.href };
}

async function resolveUpnpd(specifier: string, context: ResolveContext, nextResolve: NextResolve): Promise<Resolved> {
  try {
    return await nextResolve(specifier, context);
  } catch (err) {
    const ours = specifier === 'upnpd' || specifier.startsWith('upnpd/');
    if (!ours || selfURL === undefined || (err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    return nextResolve(specifier, { ...context, parentURL: selfURL });
  }
}
