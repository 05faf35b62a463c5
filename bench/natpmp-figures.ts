import type { FigureRow, Sizes } from './figures.js';

const RAISED = 'limits.stateChanges and requestsPerClient raised';

/**
 * The NAT-PMP rows of the results table (measured by natpmp-rows.ts, against the nftables
 * backends only), appended to `FIGURES`. Every NAT-PMP request is one UDP datagram.
 */
export const NAT_PMP_FIGURES = {
  natPmpCycles1: { label: () => `NAT-PMP map+delete, 1 client (${RAISED})`, unit: 'cycles/s', better: 'higher' },
  natPmpCycles8: { label: () => `NAT-PMP map+delete, 8 clients, 8 LAN addresses (${RAISED})`, unit: 'cycles/s', better: 'higher' },
  natPmpCpu1: { label: () => '  daemon CPU per NAT-PMP request (1 client, firewall included)', unit: 'µs', better: 'lower' },
  natPmpCpu8: { label: () => '  daemon CPU per NAT-PMP request (8 clients, firewall included)', unit: 'µs', better: 'lower' },
  natPmpMapFirst: { label: (s: Sizes) => `NAT-PMP map ${s.firstCheckpoint} (100 LAN hosts)`, unit: 's', better: 'lower' },
  natPmpMapAll: { label: (s: Sizes) => `NAT-PMP map ${s.mappings} (100 LAN hosts)`, unit: 's', better: 'lower' },
  natPmpMapCpu: { label: (s: Sizes) => `  daemon CPU per NAT-PMP map (${s.mappings} mappings)`, unit: 'µs', better: 'lower' },
} as const satisfies Record<string, FigureRow>;

export type NatPmpFigureKey = keyof typeof NAT_PMP_FIGURES;

export const NAT_PMP_FIGURE_KEYS = Object.keys(NAT_PMP_FIGURES) as NatPmpFigureKey[];
