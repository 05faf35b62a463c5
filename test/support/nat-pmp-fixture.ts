import { configSchema, type ResolvedConfig, type UserConfig } from '../../core/config/schema.js';
import { UpnpError, UpnpErrorCode } from '../../core/errors.js';
import type { ExternalAddress, FrontEndContext } from '../../core/front-end.js';
import { ClientLimits, clientLimitSettings } from '../../core/limits/client-limits.js';
import { silentLogger, type Logger } from '../../core/logger.js';
import { Ipv6Lan } from '../../core/net/ipv6.js';
import type { InterfaceAddress } from '../../core/net/network-info.js';
import type { RestoredState } from '../../core/mapping/state-file.js';
import type { Plugin } from '../../core/plugins/types.js';
import { Epoch } from '../../plugins/nat-pmp/epoch.js';
import { NatPmpFrontEnd } from '../../plugins/nat-pmp/front-end.js';
import { natPmpOptionsSchema } from '../../plugins/nat-pmp/options.js';
import { defaultPoliciesFor } from '../protocol/fixture.js';
import { makeMappings } from './fakes.js';
import { exchange } from './pcp-client.js';

export const LOOPBACK_LAN: InterfaceAddress = { interface: 'lo', address: '127.0.0.1', prefixLength: 8 };
export const TEST_EXTERNAL_IP = '203.0.113.1';

/** An external address the test sets by hand. */
export class SettableExternalAddress implements ExternalAddress {
  private readonly listeners = new Set<(current: string | undefined, previous: string | undefined) => void>();
  constructor(public externalAddress: string | undefined) {}
  onChange(listener: (current: string | undefined, previous: string | undefined) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  set(next: string | undefined): void {
    const previous = this.externalAddress;
    this.externalAddress = next;
    for (const listener of this.listeners) listener(next, previous);
  }
}

export interface NatPmpFixtureOptions {
  readonly plugins?: Plugin[];
  readonly options?: Record<string, unknown>;
  readonly config?: UserConfig;
  readonly secureMode?: boolean;
  /** The LAN served (default 127.0.0.1/8). */
  readonly lan?: InterfaceAddress;
  /** The LAN IPv6 side served (default none; in dry-run only ::1 is listened on). */
  readonly lanIpv6?: Ipv6Lan;
  /** As with `--lan`: in dry-run, LAN interfaces named on the command line. */
  readonly lanFromCommandLine?: boolean;
  /** The epoch (default: one in memory, from now). */
  readonly epoch?: Epoch;
  /** What the daemon's start found of the kept state (default: intact). */
  readonly restoredState?: RestoredState;
  /** The front-end's logger (default: silent). */
  readonly logger?: Logger;
}

/**
 * The NAT-PMP/PCP front-end on 127.0.0.1 (a free port) over a MappingService with an in-memory
 * backend and secure mode, as the daemon builds it. Loopback is the LAN (127.0.0.0/8), so a test
 * client may send from 127.0.0.2 to be a second LAN host.
 */
export async function startNatPmp(fixture: NatPmpFixtureOptions = {}) {
  const lan = [fixture.lan ?? LOOPBACK_LAN];
  const config: ResolvedConfig = {
    ...configSchema.parse({ dryRun: true, limits: { stateChanges: { burst: 10_000, perSecond: 10_000 } }, ...fixture.config }),
    source: 'test',
    lanFromCommandLine: fixture.lanFromCommandLine ?? false,
    plugins: [],
  };
  const policies = [...defaultPoliciesFor(lan, fixture.secureMode !== false), ...(fixture.plugins ?? [])];
  const { mappings, backend, clock } = makeMappings({ plugins: policies });
  const external = new SettableExternalAddress(TEST_EXTERNAL_IP);
  const limits = new ClientLimits(clientLimitSettings(config.limits), silentLogger, clock);
  const context: FrontEndContext = {
    mappings,
    lan,
    lanIpv6: fixture.lanIpv6 ?? new Ipv6Lan([]),
    limits,
    external,
    clock,
    logger: fixture.logger ?? silentLogger,
    config,
    restoredState: fixture.restoredState ?? 'intact',
  };
  // As the state-change limit above: tests send far more than a client would, unless they test the limit.
  const options = natPmpOptionsSchema.parse({ port: 0, requestsPerClient: { burst: 10_000, perSecond: 10_000 }, ...fixture.options });
  const frontEnd = new NatPmpFrontEnd(context, options, fixture.epoch ?? Epoch.inMemory(() => clock.now(), silentLogger));
  await frontEnd.start();
  // 0 when it listens nowhere (its port taken).
  const listening = frontEnd.describe()[0];
  const port = listening ? Number(new URL(listening).port) : 0;
  return {
    frontEnd,
    mappings,
    backend,
    clock,
    external,
    limits,
    port,
    /** One request, one answer (undefined when none came in time: a second by default). */
    send: (packet: Buffer, localAddress = '127.0.0.1', timeoutMs = 1_000) => exchange(packet, { host: '127.0.0.1', port, localAddress }, timeoutMs),
    close: async () => {
      await frontEnd.stop();
      await mappings.close();
    },
  };
}

export type NatPmpFixture = Awaited<ReturnType<typeof startNatPmp>>;

/** A policy that refuses (606) any mapping or pinhole restricted to `remoteHost` (a PCP FILTER to that peer). */
export function refusingPeer(remoteHost: string): Plugin {
  const check = (request: { readonly remoteHost: string }) => {
    if (request.remoteHost === remoteHost) throw new UpnpError(UpnpErrorCode.NotAuthorized, `${remoteHost} refused by the test`);
  };
  return {
    name: 'refuse-peer',
    hooks: {
      beforeMap: (request) => check(request),
      beforePinhole: (request) => {
        check(request);
        return request;
      },
    },
  };
}
