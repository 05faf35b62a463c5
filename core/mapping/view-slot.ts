import { UpnpdError } from '../errors.js';
import type { MappingKey, MappingView, PortMapping } from './types.js';

/**
 * The mapping table as plugins get it (the MAPPINGS token): registered before the plugins are
 * created, bound to the running table when the daemon starts. Reading it earlier (in a plugin's
 * constructor) is a mistake that names itself.
 */
export class MappingViewSlot implements MappingView {
  private source: MappingView | undefined;

  bind(source: MappingView): void {
    this.source = source;
  }

  get(key: MappingKey): PortMapping | undefined {
    return this.bound().get(key);
  }

  get size(): number {
    return this.bound().size;
  }

  values(): Iterable<PortMapping> {
    return this.bound().values();
  }

  heldBy(address: string): number {
    return this.bound().heldBy(address);
  }

  ofClient(internalClient: string): Iterable<PortMapping> {
    return this.bound().ofClient(internalClient);
  }

  private bound(): MappingView {
    if (!this.source)
      throw new UpnpdError(
        'UPNPD_ERR_MAPPINGS_NOT_READY',
        'the mapping table is available once the daemon runs: read MAPPINGS inside a hook, not in a constructor',
      );
    return this.source;
  }
}
