import { describe, expect, it } from 'vitest';
import type { PinholeRule } from '../../core/mapping/pinhole.js';
import { PINHOLE_SETS, pinholeProblems, pinholeSetName } from '../../plugins/nftables/pinholes.js';

const place = { table: 'inet filter', prefix: 'upnpd', chain: 'upnpd-forward' } as const;
const open: PinholeRule = { protocol: 'TCP', remoteHost: '', remotePort: 0, internalClient: '2001:db8:77::10', internalPort: 8080 };
const closed: PinholeRule = { ...open, internalPort: 8081 };

/** `nft -j list table inet filter` with every pinhole set, the first holding these rules' elements. */
function listing(...rules: PinholeRule[]): Array<Record<string, unknown>> {
  return PINHOLE_SETS.map((kind, i) => ({
    set: {
      family: 'inet',
      table: 'filter',
      name: pinholeSetName(place, kind),
      ...(i === 0 ? { elem: rules.map((r) => ({ concat: [r.internalClient, 'tcp', r.internalPort] })) } : {}),
    },
  }));
}

describe('nftables pinholeProblems', () => {
  it('nothing when the sets hold exactly the open pinholes; a pinhole missing is named', () => {
    expect(pinholeProblems(listing(open), place, [open])).toEqual([]);
    expect(pinholeProblems(listing(), place, [open])).toEqual(['1 of 1 pinhole(s) in the sets of table inet filter']);
  });

  it('names a pinhole the table does not hold (a reload of a save taken while it was open): it would let the WAN in', () => {
    expect(pinholeProblems(listing(open, closed), place, [open])).toEqual(['1 pinhole(s) in the sets of table inet filter that the table does not hold']);
  });
});
