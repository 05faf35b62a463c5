import { readFileSync } from 'node:fs';
import { release, type } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** upnpd's version from its package.json (found from here in the source tree and in dist/ alike). */
export function upnpdVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 6; depth++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'upnpd' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // No package.json at this level: look further up.
    }
    dir = dirname(dir);
  }
  throw new Error('cannot find the package.json of upnpd');
}

/** SERVER header of HTTP and SSDP (UDA 1.1): `<OS>/<version> UPnP/1.1 <product>/<version>`. */
export function serverString(version: string = upnpdVersion()): string {
  return `${type()}/${release()} UPnP/1.1 upnpd/${version}`;
}
