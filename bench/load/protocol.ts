import type { NatPmpCommand, NatPmpResultOf } from './natpmp.js';

/**
 * What the harness asks the load generator (one JSON line per command on its stdin) and what it
 * answers (one JSON line per result on its stdout). Every phase is bounded by a count and a time.
 */

/**
 * Waits until the description can be fetched, then finds the WANIPConnection control URL; with
 * `awaitMappingPort`, also until the daemon reports that TCP mapping (one it reloads at start).
 */
export interface DiscoverCommand {
  readonly kind: 'discover';
  readonly descriptionUrl: string;
  readonly timeoutMs: number;
  readonly awaitMappingPort?: number;
}

/**
 * How the client uses connections: 'close' as miniupnpc, libtorrent and GUPnP do (a new TCP
 * connection per request, sent with `Connection: Close`), or 'keep-alive' (a connection kept while
 * the daemon keeps it open; miniupnpd closes it after each response anyway).
 */
export type ConnectionMode = 'close' | 'keep-alive';

/**
 * GetExternalIPAddress from `concurrency` clients at once, client k from LAN host k (a client is a
 * host, as on a real LAN); every answer is checked.
 */
export interface ExternalAddressCommand {
  readonly kind: 'getExternalIp';
  readonly connection: ConnectionMode;
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly maxOps: number;
  readonly maxMs: number;
  readonly expectedAddress: string;
}

/** AddPortMapping then DeletePortMapping, each client on a port of its own (firstPort + client index). */
export interface AddDeleteCyclesCommand {
  readonly kind: 'addDeleteCycles';
  readonly connection: ConnectionMode;
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly maxOps: number;
  readonly maxMs: number;
  readonly firstPort: number;
}

/** The LAN hosts in turn add TCP mappings firstPort, firstPort+1, ... (each to itself) and note when each checkpoint count was reached. */
export interface AddMappingsCommand {
  readonly kind: 'addMappings';
  readonly connection: ConnectionMode;
  readonly firstPort: number;
  readonly count: number;
  readonly checkpoints: readonly number[];
  readonly maxMs: number;
}

/** Lists every mapping with GetGenericPortMappingEntry, index 0 up to the first 713. */
export interface ListByIndexCommand {
  readonly kind: 'listByIndex';
  readonly connection: ConnectionMode;
  readonly maxEntries: number;
  readonly maxMs: number;
}

/** Lists every TCP mapping with GetListOfPortMappings, `pageSize` per call. */
export interface ListInPagesCommand {
  readonly kind: 'listInPages';
  readonly connection: ConnectionMode;
  readonly pageSize: number;
  readonly maxEntries: number;
  readonly maxMs: number;
}

export type LoadCommand = DiscoverCommand | ExternalAddressCommand | AddDeleteCyclesCommand | AddMappingsCommand | ListByIndexCommand | ListInPagesCommand;

export interface DiscoverResult {
  readonly controlUrl: string;
  readonly serviceType: string;
}

export interface ThroughputResult {
  /** Operations completed in the measured time. */
  readonly ops: number;
  readonly elapsedMs: number;
  /** Operations of the warm-up before it (they cost the daemon CPU too). */
  readonly warmupOps: number;
  /** The generator's own CPU time (user + system) over the measured time. */
  readonly cpuMs: number;
}

export interface AddMappingsResult {
  readonly added: number;
  readonly elapsedMs: number;
  /** Checkpoint count → ms from the first request until that many mappings were added. */
  readonly checkpointMs: Readonly<Record<number, number>>;
}

export interface ListResult {
  readonly entries: number;
  readonly calls: number;
  readonly elapsedMs: number;
  /** The generator's own CPU time (user + system) over the listing. */
  readonly cpuMs: number;
}

export interface ResultOf {
  discover: DiscoverResult;
  getExternalIp: ThroughputResult;
  addDeleteCycles: ThroughputResult;
  addMappings: AddMappingsResult;
  listByIndex: ListResult;
  listInPages: ListResult;
}

/** Everything the generator runs: the UPnP phases above and the NAT-PMP ones (natpmp.ts). */
export type GeneratorCommand = LoadCommand | NatPmpCommand;
export type GeneratorResultOf = ResultOf & NatPmpResultOf;

export interface CommandMessage {
  readonly id: number;
  readonly command: GeneratorCommand;
}

export type ResultMessage =
  { readonly id: number; readonly ok: true; readonly result: unknown } | { readonly id: number; readonly ok: false; readonly error: string };

/** The lease every benchmark mapping asks for, and its description. */
export const BENCH_LEASE_SECONDS = 3600;
export const BENCH_DESCRIPTION = 'bench';

/** The AddPortMapping arguments of the bench's mappings: `port` outside to the same port of `internalClient`. */
export function benchMappingArgs(internalClient: string, port: number): Record<string, string | number> {
  return {
    NewRemoteHost: '',
    NewExternalPort: port,
    NewProtocol: 'TCP',
    NewInternalPort: port,
    NewInternalClient: internalClient,
    NewEnabled: 1,
    NewPortMappingDescription: BENCH_DESCRIPTION,
    NewLeaseDuration: BENCH_LEASE_SECONDS,
  };
}
