import type { PinholeChanges } from 'upnpd';
import type { PinholeRuleOptions } from '../pinholes.js';

/**
 * Golden ip6tables-restore scripts for IPv6 pinholes, shared by the unit test (exact text) and the
 * namespace test (`ip6tables-restore --test`, then applied and read back with counters).
 */
export const GOLDEN_PINHOLE_OPTIONS: PinholeRuleOptions = { chain: 'UPNPD-PINHOLES', wanInterface: 'wan0', comment: 'upnpd' };

export interface GoldenIp6Change {
  readonly name: string;
  readonly changes: PinholeChanges;
  readonly script: string;
}

const server = { remoteHost: '', remotePort: 0, internalClient: '2001:db8:77::10', internalPort: 8080, protocol: 'TCP' } as const;
const partner = { remoteHost: '2001:DB8:FF::2', remotePort: 4500, internalClient: '2001:db8:77::11', internalPort: 4500, protocol: 'UDP' } as const;

export const GOLDEN_IP6_CHANGES: readonly GoldenIp6Change[] = [
  {
    name: 'opens a pinhole to any remote host, and one restricted to a remote host and port (addresses canonical)',
    changes: { remove: [], add: [server, partner] },
    script: `*filter
-A UPNPD-PINHOLES -d 2001:db8:77::10/128 -i wan0 -p tcp -m tcp --dport 8080 -m comment --comment "upnpd pinhole tcp from any port 0 to 2001:db8:77::10 port 8080" -j ACCEPT
-A UPNPD-PINHOLES -s 2001:db8:ff::2/128 -d 2001:db8:77::11/128 -i wan0 -p udp -m udp --sport 4500 --dport 4500 -m comment --comment "upnpd pinhole udp from 2001:db8:ff::2 port 4500 to 2001:db8:77::11 port 4500" -j ACCEPT
COMMIT
`,
  },
  {
    name: 'closes one (deletions first, one run)',
    changes: { remove: [server], add: [] },
    script: `*filter
-D UPNPD-PINHOLES -d 2001:db8:77::10/128 -i wan0 -p tcp -m tcp --dport 8080 -m comment --comment "upnpd pinhole tcp from any port 0 to 2001:db8:77::10 port 8080" -j ACCEPT
COMMIT
`,
  },
];
