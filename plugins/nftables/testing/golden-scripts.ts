import type { ChangeSet, Protocol, RuleSpec } from 'upnpd';
import { nftablesOptionsSchema, type NftablesUserOptions } from '../options.js';
import type { NftablesSettings } from '../rules.js';

/**
 * Golden change scripts of the nftables backend, shared by the unit test (exact text) and the
 * namespace test (each script accepted by the installed `nft -c` on a table in the `installed`
 * state, then applied and read back).
 */
export interface GoldenChange {
  readonly name: string;
  readonly settings: NftablesSettings;
  /** The rules in effect before the change (installed first by the namespace test). */
  readonly installed: readonly RuleSpec[];
  readonly changes: ChangeSet;
  readonly script: string;
}

const GOLDEN_WAN = 'wan0';
/** The admin's table and forward chain that goldens with `forwardJump` name. */
export const GOLDEN_ADMIN_TABLE = { family: 'inet', table: 'filter', chain: 'forward' } as const;

export function goldenSettings(options: NftablesUserOptions = {}): NftablesSettings {
  return { ...nftablesOptionsSchema.parse(options), wanInterface: GOLDEN_WAN };
}

export function mapping(protocol: Protocol, externalPort: number, internalClient: string, internalPort: number, remoteHost = ''): RuleSpec {
  return { remoteHost, externalPort, protocol, internalClient, internalPort };
}

const web = mapping('TCP', 8080, '192.168.1.10', 80);
const webMoved = mapping('TCP', 8080, '192.168.1.11', 8000);
const game = mapping('UDP', 27015, '192.168.1.12', 27015);
const webFromPartner = mapping('TCP', 8443, '192.168.1.10', 443, '203.0.113.7');
const webAlias = mapping('TCP', 8081, '192.168.1.10', 80);

/** The complete set-up: DNAT maps in upnpd's table, the accept set in the admin's table. */
const withJump = goldenSettings({ forwardJump: GOLDEN_ADMIN_TABLE });

export const GOLDEN_CHANGES: readonly GoldenChange[] = [
  {
    name: 'add: a TCP and a UDP mapping',
    settings: withJump,
    installed: [],
    changes: { remove: [], add: [web, game] },
    script: `add element inet upnpd dnat-any { tcp . 8080 : 192.168.1.10 . 80, udp . 27015 : 192.168.1.12 . 27015 }
add element inet filter upnpd-accept { 192.168.1.10 . tcp . 80, 192.168.1.12 . udp . 27015 }
`,
  },
  {
    name: 'replace: same key, new target (delete then add, one transaction)',
    settings: withJump,
    installed: [web],
    changes: { remove: [web], add: [webMoved] },
    script: `delete element inet upnpd dnat-any { tcp . 8080 }
delete element inet filter upnpd-accept { 192.168.1.10 . tcp . 80 }
add element inet upnpd dnat-any { tcp . 8080 : 192.168.1.11 . 8000 }
add element inet filter upnpd-accept { 192.168.1.11 . tcp . 8000 }
`,
  },
  {
    name: 'delete',
    settings: withJump,
    installed: [web, game],
    changes: { remove: [game], add: [] },
    script: `delete element inet upnpd dnat-any { udp . 27015 }
delete element inet filter upnpd-accept { 192.168.1.12 . udp . 27015 }
`,
  },
  {
    name: 'remote host: keyed by source address in its own map',
    settings: withJump,
    installed: [],
    changes: { remove: [], add: [webFromPartner] },
    script: `add element inet upnpd dnat-remote { 203.0.113.7 . tcp . 8443 : 192.168.1.10 . 443 }
add element inet filter upnpd-accept { 192.168.1.10 . tcp . 443 }
`,
  },
  {
    name: 'shared target: the accept element stays while another mapping uses it',
    settings: withJump,
    installed: [web, webAlias],
    changes: { remove: [web], add: [] },
    script: `delete element inet upnpd dnat-any { tcp . 8080 }
`,
  },
  {
    name: 'mixed batch: remote-host removal, replace, addition',
    settings: withJump,
    installed: [web, webFromPartner],
    changes: { remove: [webFromPartner, web], add: [webMoved, game] },
    script: `delete element inet upnpd dnat-remote { 203.0.113.7 . tcp . 8443 }
delete element inet upnpd dnat-any { tcp . 8080 }
delete element inet filter upnpd-accept { 192.168.1.10 . tcp . 443, 192.168.1.10 . tcp . 80 }
add element inet upnpd dnat-any { tcp . 8080 : 192.168.1.11 . 8000, udp . 27015 : 192.168.1.12 . 27015 }
add element inet filter upnpd-accept { 192.168.1.11 . tcp . 8000, 192.168.1.12 . udp . 27015 }
`,
  },
  {
    name: 'without forwardJump, family ip and another table name: only the DNAT maps change',
    settings: goldenSettings({ family: 'ip', table: 'igd' }),
    installed: [web],
    changes: { remove: [web], add: [webMoved] },
    script: `delete element ip igd dnat-any { tcp . 8080 }
add element ip igd dnat-any { tcp . 8080 : 192.168.1.11 . 8000 }
`,
  },
];
