import type { FigureSpec } from './figures.js';
import type { BenchProfile } from './profile.js';

/** The NAT-PMP rows of the results table (measured by natpmp-rows.ts). */
export const NAT_PMP_FIGURE_KEYS = ['natPmpCycles1', 'natPmpCycles8', 'natPmpCpu1', 'natPmpCpu8', 'natPmpMapFirst', 'natPmpMapAll', 'natPmpMapCpu'] as const;

export type NatPmpFigureKey = (typeof NAT_PMP_FIGURE_KEYS)[number];

export function natPmpFigureSpecs(profile: Pick<BenchProfile, 'mappings' | 'firstCheckpoint'>): Record<NatPmpFigureKey, FigureSpec> {
  const raised = 'limits.stateChanges raised';
  return {
    natPmpCycles1: { label: `NAT-PMP map+delete, 1 client (${raised})`, unit: 'cycles/s', better: 'higher' },
    natPmpCycles8: { label: `NAT-PMP map+delete, 8 clients, 8 LAN addresses (${raised})`, unit: 'cycles/s', better: 'higher' },
    natPmpCpu1: { label: '  daemon CPU per NAT-PMP request (1 client, firewall included)', unit: 'µs', better: 'lower' },
    natPmpCpu8: { label: '  daemon CPU per NAT-PMP request (8 clients, firewall included)', unit: 'µs', better: 'lower' },
    natPmpMapFirst: { label: `NAT-PMP map ${profile.firstCheckpoint} (100 LAN hosts)`, unit: 's', better: 'lower' },
    natPmpMapAll: { label: `NAT-PMP map ${profile.mappings} (100 LAN hosts)`, unit: 's', better: 'lower' },
    natPmpMapCpu: { label: `  daemon CPU per NAT-PMP map (${profile.mappings} mappings)`, unit: 'µs', better: 'lower' },
  };
}
