import { z } from 'zod';
import { defineBackend, type BackendSpec } from 'upnpd';
import { DryRunBackend } from './backend.js';

function isBackendSpec(value: unknown): value is BackendSpec {
  return typeof value === 'object' && value !== null && (value as BackendSpec).kind === 'backend' && typeof (value as BackendSpec).create === 'function';
}

export const dryRunOptionsSchema = z
  .object({
    /** The backend whose rules to show, e.g. `nftables({ table: 'gw' })`; any backend with `render` will do. */
    imitate: z.custom<BackendSpec>(isBackendSpec, 'must be a backend factory call such as nftables({...})').optional(),
  })
  .strict();

/**
 * The dry-run backend: `plugins: [dryRun({ imitate: nftables() })]`, or `upnpd --dry-run`, which
 * wraps whichever backend was chosen. The imitated backend is built with the same services but only
 * its `render` is ever called.
 */
export const dryRun = defineBackend({
  name: 'dry-run',
  optionsSchema: dryRunOptionsSchema,
  create: ({ options, logger, build }) => new DryRunBackend(options.imitate && { name: options.imitate.name, backend: build(options.imitate) }, logger),
});

export { DryRunBackend } from './backend.js';
