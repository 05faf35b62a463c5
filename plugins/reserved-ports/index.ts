import type { InjectionToken } from 'tsyringe';
import { CLOCK, CONFIG, PLUGIN_OPTIONS, definePlugin, refusalReporter, z } from 'upnpd';
import { ReservedPortsPolicy, type ReservedPortsOptions } from './policy.js';
import { ProcNetSockets, type ListeningSockets } from './sockets.js';

export const reservedPortsOptionsSchema = z
  .object({
    below: z.number().int().min(0).max(65536).default(1024),
    listening: z.boolean().default(true),
  })
  .strict();

/** Where the policy reads the gateway's listening sockets; register another in a test. */
export const LISTENING_SOCKETS: InjectionToken<ListeningSockets> = Symbol('upnpd.reserved-ports.ListeningSockets');

/**
 * `reservedPorts({ below, listening })`: refuses external ports the gateway needs for itself. On by
 * default (below 1024, listening ports, upnpd's own ports).
 */
export const reservedPorts = definePlugin({
  name: 'reserved-ports',
  optionsSchema: reservedPortsOptionsSchema,
  create: (container) =>
    new ReservedPortsPolicy(
      container.resolve(PLUGIN_OPTIONS) as ReservedPortsOptions,
      container.resolve(CONFIG).httpPort,
      container.isRegistered(LISTENING_SOCKETS, true) ? container.resolve(LISTENING_SOCKETS) : new ProcNetSockets(container.resolve(CLOCK)),
      refusalReporter(container, 'reserved-ports'),
    ),
});

export { ReservedPortsPolicy, UPNPD_PORTS } from './policy.js';
export { ProcNetSockets, SOCKET_TABLE_LIMITS, listeningPorts, type ListeningSockets } from './sockets.js';
