import { silentLogger } from '../../core/logger.js';
import type { SsdpAdvertiserOptions } from '../../core/upnp/ssdp/advertiser.js';

/** The three UDNs the SSDP tests advertise. */
export const TEST_UDNS = {
  gateway: 'uuid:11111111-1111-5111-8111-111111111111',
  wan: 'uuid:22222222-2222-5222-8222-222222222222',
  wanConnection: 'uuid:33333333-3333-5333-8333-333333333333',
} as const;

/**
 * An advertiser serving 127.0.0.1/32 on `port`, BOOTID 17, CONFIGID 3, whose LOCATION is
 * `http://ADDRESS:5555/rootDesc[VERSION].xml` (IPv6 addresses in brackets).
 */
export function testAdvertiserOptions(port: number): SsdpAdvertiserOptions {
  return {
    interfaces: [{ interface: 'lo', address: '127.0.0.1', prefixLength: 32 }],
    location: (lan, igdVersion) => `http://${lan.address.includes(':') ? `[${lan.address}]` : lan.address}:5555/rootDesc${igdVersion ?? ''}.xml`,
    udns: TEST_UDNS,
    igdVersion: 2,
    bootId: 17,
    configId: 3,
    notifyIntervalSeconds: 300,
    serverString: 'Linux/6.1 UPnP/1.1 upnpd/0.1.0',
    logger: silentLogger,
    port,
  };
}
