import type { TestNamespace } from '../../test/netns/netns.js';

/**
 * The admin's own nftables forward filter on the gateway, the same for both daemons: drop by
 * default, accept replies and LAN-to-WAN traffic. Each daemon opens its mapped flows from here:
 * miniupnpd through a jump to its rule chain (its chains live in this table, as Debian's
 * nft_init.sh lays them out), upnpd through the jump it inserts itself (`forwardJump`).
 */
export const ADMIN_FORWARD = { family: 'inet', table: 'filter', chain: 'forward' } as const;

export interface AdminFirewallSettings {
  readonly lanInterface: string;
  readonly wanInterface: string;
}

/**
 * An `nft -f` script creating the admin's table. `forwardRules` go after the accepts for replies
 * and LAN-to-WAN traffic (so that only new inbound connections reach them); `chains` are further
 * chains of the table, as nft text.
 */
export function adminFirewallScript(s: AdminFirewallSettings, extra: { forwardRules?: readonly string[]; chains?: readonly string[] } = {}): string {
  const { family, table, chain } = ADMIN_FORWARD;
  return [
    `table ${family} ${table} {`,
    `  chain ${chain} {`,
    '    type filter hook forward priority 0; policy drop;',
    '    ct state established,related accept',
    `    iifname "${s.lanInterface}" oifname "${s.wanInterface}" accept`,
    ...(extra.forwardRules ?? []).map((rule) => `    ${rule}`),
    '  }',
    ...(extra.chains ?? []),
    '}',
    '',
  ].join('\n');
}

/**
 * Removes an nftables table from the gateway if it is there (a daemon killed before its cleanup
 * leaves its table behind; the next daemon must start from the admin's rules alone). Returns
 * whether there was one.
 */
export async function removeTableIfPresent(gateway: TestNamespace, family: string, table: string): Promise<boolean> {
  const tables = await gateway.exec('nft', ['list', 'tables']);
  if (!tables.split('\n').some((line) => line.trim() === `table ${family} ${table}`)) return false;
  await gateway.exec('nft', ['delete', 'table', family, table]);
  return true;
}
