import { readFileSync } from 'node:fs';
import type { StoredMapping } from '../../core/mapping/state-file.js';

/** A `mappings.json` as upnpd writes it. */
export interface SavedState {
  readonly version: number;
  readonly savedAt: string;
  readonly mappings: readonly StoredMapping[];
}

/** Reads the `mappings.json` at `path` (whatever upnpd wrote there, taken to be well-formed). */
export function readSavedState(path: string): SavedState {
  return JSON.parse(readFileSync(path, 'utf8')) as SavedState;
}
