import { BENCH_LAN_IPV6_HOSTS } from './testbed.js';
import type { FigureRow, Sizes } from './figures.js';

/**
 * How many pinholes the pinhole row adds: the table's first checkpoint (1000 in the full run, 200
 * with --quick), an ordinary home network's worth many times over.
 */
export function pinholeCount(sizes: Sizes): number {
  return sizes.firstCheckpoint;
}

/**
 * The IPv6 pinhole rows of the results table (measured by pinhole-rows.ts, against the nftables
 * backends only), appended to `FIGURES`.
 */
export const PINHOLE_FIGURES = {
  pinholesAdd: {
    label: (s: Sizes) => `add ${pinholeCount(s)} IPv6 pinholes (AddPinhole over IPv6, ${BENCH_LAN_IPV6_HOSTS} LAN IPv6 hosts)`,
    unit: 's',
    better: 'lower',
  },
  pinholeCpu: { label: (s: Sizes) => `  daemon CPU per AddPinhole (${pinholeCount(s)} pinholes, firewall included)`, unit: 'µs', better: 'lower' },
} as const satisfies Record<string, FigureRow>;

export type PinholeFigureKey = keyof typeof PINHOLE_FIGURES;

export const PINHOLE_FIGURE_KEYS = Object.keys(PINHOLE_FIGURES) as PinholeFigureKey[];
