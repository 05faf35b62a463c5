import { ADMIN_FORWARD, adminFirewallScript, type AdminFirewallSettings } from './gateway-firewall.js';

/**
 * miniupnpd's configuration and its nftables skeleton, as text built from data (pure functions,
 * tested without root).
 *
 * The testbed's WAN address is in TEST-NET-3, which miniupnpd calls reserved: it would refuse to
 * forward ports. miniupnpd 2.3.1 has no `ext_allow_private_ipv4`, so the harness runs a STUN server
 * on the WAN host and sets `ext_perform_stun`: miniupnpd learns that its WAN address is reachable
 * from outside without filtering (all four NAT-test requests answered, address and port unchanged)
 * and enables port forwarding with that address as the external one.
 */

export interface MiniupnpdSettings {
  readonly wanInterface: string;
  readonly lanInterface: string;
  readonly lanSubnet: string;
  readonly httpPort: number;
  readonly stunHost: string;
  readonly stunPort: number;
  readonly uuid: string;
  /** Where persisted mappings are kept (miniupnpd reloads them at start). */
  readonly leaseFile: string;
}

/**
 * The chains miniupnpd 2.3.1 (Debian's nftables build) fills, by default all in the `inet filter`
 * table (upnp_table_name = upnp_nat_table_name = "filter"), which is the admin's table here.
 */
export const MINIUPNPD_NFT = {
  family: ADMIN_FORWARD.family,
  table: ADMIN_FORWARD.table,
  forwardChain: 'miniupnpd',
  natChain: 'prerouting_miniupnpd',
  postroutingChain: 'postrouting_miniupnpd',
} as const;

/**
 * The chains of the iptables build (its defaults; iptables_init.sh creates them): nat MINIUPNPD
 * from PREROUTING, filter MINIUPNPD from FORWARD, nat MINIUPNPD-POSTROUTING from POSTROUTING.
 */
export const MINIUPNPD_IPTABLES = { chain: 'MINIUPNPD', postroutingChain: 'MINIUPNPD-POSTROUTING' } as const;

/**
 * The miniupnpd.conf the benchmark runs with: the same policy as upnpd's defaults where both have
 * one. The nftables build is told where its chains are; the iptables build uses its defaults.
 */
export function miniupnpdConfig(s: MiniupnpdSettings, backend: 'nftables' | 'iptables' = 'nftables'): string {
  const chains =
    backend === 'nftables'
      ? [
          `upnp_table_name=${MINIUPNPD_NFT.table}`,
          `upnp_nat_table_name=${MINIUPNPD_NFT.table}`,
          `upnp_forward_chain=${MINIUPNPD_NFT.forwardChain}`,
          `upnp_nat_chain=${MINIUPNPD_NFT.natChain}`,
          `upnp_nat_postrouting_chain=${MINIUPNPD_NFT.postroutingChain}`,
        ]
      : [];
  return [
    `ext_ifname=${s.wanInterface}`,
    `listening_ip=${s.lanInterface}`,
    `http_port=${s.httpPort}`,
    // NAT-PMP and PCP on, as upnpd's NAT-PMP/PCP front-end is by default: the NAT-PMP rows need it.
    'enable_natpmp=yes',
    'enable_upnp=yes',
    'ext_perform_stun=yes',
    `ext_stun_host=${s.stunHost}`,
    `ext_stun_port=${s.stunPort}`,
    // Like upnpd's secure mode: a client may map only to itself.
    'secure_mode=yes',
    'system_uptime=no',
    'notify_interval=900',
    // No periodic sweep of unused rules during the measurements.
    'clean_ruleset_interval=0',
    `lease_file=${s.leaseFile}`,
    `uuid=${s.uuid}`,
    ...chains,
    // upnpd's default lease policy: at most a week.
    'min_lifetime=120',
    'max_lifetime=604800',
    `allow 1024-65535 ${s.lanSubnet} 1024-65535`,
    'deny 0-65535 0.0.0.0/0 0-65535',
    '',
  ].join('\n');
}

/**
 * The admin's table with the chains Debian's /etc/miniupnpd/nft_init.sh would add to it (that
 * script cannot run as shipped: the miniupnpd_functions.sh it sources is missing from the
 * package): miniupnpd's forward chain, jumped to after the admin's accepts, and its nat chains,
 * jumped to from hooked prerouting and postrouting chains.
 */
export function miniupnpdNftSkeleton(s: AdminFirewallSettings): string {
  const { forwardChain, natChain, postroutingChain } = MINIUPNPD_NFT;
  return adminFirewallScript(s, {
    forwardRules: [`jump ${forwardChain}`],
    chains: [
      `  chain ${forwardChain} {`,
      '  }',
      '  chain prerouting {',
      '    type nat hook prerouting priority -100; policy accept;',
      `    jump ${natChain}`,
      '  }',
      '  chain postrouting {',
      '    type nat hook postrouting priority 100; policy accept;',
      `    jump ${postroutingChain}`,
      '  }',
      `  chain ${natChain} {`,
      '  }',
      `  chain ${postroutingChain} {`,
      '  }',
    ],
  });
}

/**
 * A lease file as miniupnpd 2.x writes it (PROTO:EPORT:IADDR:IPORT:EXPIRY:DESC, EXPIRY in Unix
 * seconds), for the start-up-with-persisted-mappings figure.
 */
export function miniupnpdLeaseFile(mappings: readonly { port: number; client: string; expiresAtUnix: number; description: string }[]): string {
  return mappings.map((m) => `TCP:${m.port}:${m.client}:${m.port}:${m.expiresAtUnix}:${m.description}\n`).join('');
}

/**
 * An iptables-legacy-restore script: the admin's forward filter in x_tables (the tables
 * miniupnpd-iptables' libiptc edits), drop by default, replies and LAN-to-WAN accepted; and, for
 * miniupnpd, its chains and jumps as Debian's iptables_init.sh adds them. The nat and mangle tables
 * are written whole, so that a run starts from them alone.
 */
export function legacyFirewallScript(s: { readonly lanInterface: string; readonly wanInterface: string }, withMiniupnpd: boolean): string {
  const { chain, postroutingChain } = MINIUPNPD_IPTABLES;
  const ours = (lines: readonly string[]) => (withMiniupnpd ? lines : []);
  return [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD DROP [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ...ours([`:${chain} - [0:0]`, `-A FORWARD -i ${s.wanInterface} ! -o ${s.wanInterface} -j ${chain}`]),
    '-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    `-A FORWARD -i ${s.lanInterface} -o ${s.wanInterface} -j ACCEPT`,
    'COMMIT',
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    ...ours([
      `:${chain} - [0:0]`,
      `:${postroutingChain} - [0:0]`,
      `-A PREROUTING -i ${s.wanInterface} -j ${chain}`,
      `-A POSTROUTING -o ${s.wanInterface} -j ${postroutingChain}`,
    ]),
    'COMMIT',
    '*mangle',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    ...ours([`:${chain} - [0:0]`, `-A PREROUTING -i ${s.wanInterface} -j ${chain}`]),
    'COMMIT',
    '',
  ].join('\n');
}
