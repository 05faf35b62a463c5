import type { Ipv6InterfaceAddress } from '../../core/net/ipv6.js';
import type { InterfaceAddress, NetworkInfo } from '../../core/net/network-info.js';

/**
 * Loopback as the LAN, whose addresses a test changes and reports to the watchers as the kernel's
 * address event would (no `ip monitor`, no poll).
 */
export class LoopbackNetwork implements NetworkInfo {
  private readonly listeners = new Set<() => void>();

  constructor(
    public lan: InterfaceAddress[],
    public ipv6: Ipv6InterfaceAddress[] = [],
  ) {}

  ipv4Addresses(iface: string): InterfaceAddress[] {
    return iface === 'lo' ? this.lan : [];
  }
  ipv6Addresses(iface: string): Ipv6InterfaceAddress[] {
    return iface === 'lo' ? this.ipv6 : [];
  }
  counters() {
    return Promise.resolve(null);
  }
  link() {
    return Promise.resolve(null);
  }
  watchAddresses(onChange: () => void): () => void {
    this.listeners.add(onChange);
    return () => this.listeners.delete(onChange);
  }
  /** New addresses (IPv6 unchanged unless given), and the event. */
  change(lan: InterfaceAddress[], ipv6: Ipv6InterfaceAddress[] = this.ipv6): void {
    this.lan = lan;
    this.ipv6 = ipv6;
    for (const listener of this.listeners) listener();
  }
}
