import type { ChangeSet, PinholeRule, Protocol, RuleSpec } from 'upnpd';
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

export function pinhole(protocol: Protocol, internalClient: string, internalPort: number, remoteHost = '', remotePort = 0): PinholeRule {
  return { remoteHost, remotePort, internalClient, internalPort, protocol };
}

/** A golden change of IPv6 pinholes (with `installed` pinholes put in first), always with forwardJump into an inet table. */
export interface GoldenPinholeChange {
  readonly name: string;
  readonly settings: NftablesSettings;
  readonly installed: readonly PinholeRule[];
  readonly changes: ChangeSet;
  readonly script: string;
}

const server = pinhole('TCP', '2001:db8:1::10', 8080);
const voice = pinhole('UDP', '2001:db8:1::10', 5060);
const fromPartner = pinhole('TCP', '2001:db8:1::10', 22, '2001:db8:ffff::7');
const fromPartnerPort = pinhole('UDP', '2001:db8:1::11', 4500, '2001:db8:ffff::7', 4500);
const fromAnyPort443 = pinhole('TCP', '2001:db8:1::11', 8443, '', 443);

export const GOLDEN_PINHOLE_CHANGES: readonly GoldenPinholeChange[] = [
  {
    name: 'pinholes: a TCP and a UDP one to any remote host, with an IPv4 mapping in the same transaction',
    settings: withJump,
    installed: [],
    changes: { remove: [], add: [web], pinholes: { remove: [], add: [server, voice] } },
    script: `add element inet upnpd dnat-any { tcp . 8080 : 192.168.1.10 . 80 }
add element inet filter upnpd-accept { 192.168.1.10 . tcp . 80 }
add element inet filter upnpd-pinholes { 2001:db8:1::10 . tcp . 8080, 2001:db8:1::10 . udp . 5060 }
`,
  },
  {
    name: 'pinholes: restricted to a remote host, a remote port, or both: one set each',
    settings: withJump,
    installed: [],
    changes: { remove: [], add: [], pinholes: { remove: [], add: [fromPartner, fromAnyPort443, fromPartnerPort] } },
    script: `add element inet filter upnpd-pinholes-host { 2001:db8:ffff::7 . 2001:db8:1::10 . tcp . 22 }
add element inet filter upnpd-pinholes-port { 443 . 2001:db8:1::11 . tcp . 8443 }
add element inet filter upnpd-pinholes-host-port { 2001:db8:ffff::7 . 4500 . 2001:db8:1::11 . udp . 4500 }
`,
  },
  {
    name: 'pinholes: closing one and moving another (delete then add, one transaction)',
    settings: withJump,
    installed: [server, fromPartner],
    changes: { remove: [], add: [], pinholes: { remove: [server, fromPartner], add: [pinhole('TCP', '2001:db8:1::10', 8081)] } },
    script: `delete element inet filter upnpd-pinholes { 2001:db8:1::10 . tcp . 8080 }
delete element inet filter upnpd-pinholes-host { 2001:db8:ffff::7 . 2001:db8:1::10 . tcp . 22 }
add element inet filter upnpd-pinholes { 2001:db8:1::10 . tcp . 8081 }
`,
  },
];

/** Recorded from nft 1.0.6: `nft -j list table inet upnpd` with three mappings. */
export const GOLDEN_LISTING = JSON.stringify({
  nftables: [
    { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } },
    { table: { family: 'inet', name: 'upnpd', handle: 2 } },
    {
      map: {
        family: 'inet',
        name: 'dnat-any',
        table: 'upnpd',
        type: ['inet_proto', 'inet_service'],
        handle: 3,
        map: 'ipv4_addr . inet_service',
        elem: [
          [{ concat: ['udp', 9000] }, { concat: ['192.168.1.11', 9000] }],
          [{ concat: ['tcp', 8080] }, { concat: ['192.168.1.10', 80] }],
        ],
      },
    },
    {
      map: {
        family: 'inet',
        name: 'dnat-remote',
        table: 'upnpd',
        type: ['ipv4_addr', 'inet_proto', 'inet_service'],
        handle: 4,
        map: 'ipv4_addr . inet_service',
        elem: [[{ concat: ['1.2.3.4', 'tcp', 8080] }, { concat: ['192.168.1.12', 80] }]],
      },
    },
    { set: { family: 'inet', name: 'upnpd-accept', table: 'upnpd', type: ['ipv4_addr', 'inet_proto', 'inet_service'], handle: 5 } },
    { chain: { family: 'inet', table: 'upnpd', name: 'prerouting', handle: 1, type: 'nat', hook: 'prerouting', prio: -100, policy: 'accept' } },
  ],
});
