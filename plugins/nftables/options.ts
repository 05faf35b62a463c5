import { z } from 'zod';
import { INTERFACE_NAME, interfaceName } from 'upnpd/backend';

/** Table, chain and set names upnpd writes into nft scripts: plain identifiers, never quoted. */
const nftName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]{0,31}$/, 'must be an nft name: a letter or _, then letters, digits, _ or - (at most 32)');
/** Linux interface names (as the daemon config accepts them) are safe inside a quoted nft string. */
export { INTERFACE_NAME };
const tableFamily = z.enum(['inet', 'ip']);

/**
 * The admin's forward chain, where upnpd accepts mapped (DNATed) flows: upnpd adds a chain and an
 * accept set to the admin's table and inserts one `jump` rule at the top of this chain (removed
 * again, by handle, at shutdown).
 *
 * Why not a forward chain in upnpd's own table: nftables runs every base chain registered at a
 * hook, and an `accept` only ends the chain it is in, so a drop policy (or drop rule) in the
 * admin's table still drops the packet, and where nothing drops, an accept changes nothing. So
 * the accept has to be decided in the admin's chain. Without `forwardJump`, upnpd only translates,
 * and an admin whose forward policy drops accepts DNATed flows themselves, e.g. nft
 * `ct status dnat accept` or iptables `-m conntrack --ctstate DNAT -j ACCEPT`.
 *
 * Naming an iptables-nft chain (`{ family: 'ip', table: 'filter', chain: 'FORWARD' }`) works for
 * packets, but iptables-save then skips that table as incompatible, and a full iptables-restore
 * drops upnpd's chain and set; with iptables-nft, prefer the conntrack rule above.
 */
const forwardJumpSchema = z
  .object({
    family: tableFamily,
    table: nftName,
    chain: nftName,
  })
  .strict();

/** Options of the nftables backend: `nftables({ table, family, wanInterface, forwardJump })`. */
export const nftablesOptionsSchema = z
  .object({
    /** upnpd's own table; nothing else lives in it, and upnpd changes no other table's rules. */
    table: nftName.default('upnpd'),
    family: tableFamily.default('inet'),
    /** Interface whose incoming packets are translated; defaults to the daemon's `wan`. */
    wanInterface: interfaceName.optional(),
    forwardJump: forwardJumpSchema.optional(),
  })
  .strict();

export type ForwardJump = z.output<typeof forwardJumpSchema>;
export type NftablesOptions = z.output<typeof nftablesOptionsSchema>;
export type NftablesUserOptions = z.input<typeof nftablesOptionsSchema>;
