import { createHash } from 'node:crypto';
import { renderRootDescription, type DeviceInfo } from './device.js';
import { DEFAULT_DESCRIPTION_PATH, endpointsOf, type IgdView } from './igd-views.js';
import { renderScpd } from './scpd.js';

/** Windows (and the Xbox, which shares its UPnP stack) break on IGD:2 descriptions. */
const IGD1_ONLY_CLIENTS = /\b(?:Microsoft|Windows|Xbox)\b/i;

/**
 * Every description document upnpd serves, rendered once. CONFIGID (the root attribute, the SCPD
 * attribute and CONFIGID.UPNP.ORG in SSDP) is derived from their content, so it changes whenever
 * any description changes and stays the same across restarts otherwise.
 */
export class DescriptionDocuments {
  readonly configId: number;
  private readonly byPath = new Map<string, string>();

  constructor(
    /** Highest version first: the default path shows the first view. */
    private readonly views: readonly IgdView[],
    info: DeviceInfo,
  ) {
    if (views.length === 0) throw new RangeError('at least one IGD view is needed');
    this.configId = configIdOf(this.render(info, undefined));
    for (const [path, document] of this.render(info, this.configId)) this.byPath.set(path, document);
  }

  /** The document at a path, or undefined. The default path shows IGD:1 to clients that need it. */
  find(path: string, userAgent: string | undefined): string | undefined {
    if (path === DEFAULT_DESCRIPTION_PATH) return this.byPath.get(this.viewFor(userAgent).descriptionPath);
    return this.byPath.get(path);
  }

  /** The view the default description path shows to this client. */
  viewFor(userAgent: string | undefined): IgdView {
    if (userAgent && IGD1_ONLY_CLIENTS.test(userAgent)) return this.views.find((v) => v.version === 1) ?? this.views[0]!;
    return this.views[0]!;
  }

  private render(info: DeviceInfo, configId: number | undefined): Map<string, string> {
    const documents = new Map<string, string>();
    for (const view of this.views) {
      documents.set(view.descriptionPath, renderRootDescription(view, info, configId));
      for (const endpoint of endpointsOf(view)) documents.set(endpoint.scpdPath, renderScpd(endpoint.service, configId));
    }
    return documents;
  }
}

/** UDA 1.1 §1.1.2: CONFIGID is a non-negative 31-bit number; 0..16777215 are for devices to pick. */
function configIdOf(documents: ReadonlyMap<string, string>): number {
  const hash = createHash('sha256');
  // Sorted by code unit, not localeCompare: collation would load ICU's collation data (about 2 MB
  // of resident memory) for paths that are ASCII anyway.
  for (const [path, document] of [...documents].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) hash.update(`${path}\n${document}\n`);
  return hash.digest().readUIntBE(0, 3);
}
