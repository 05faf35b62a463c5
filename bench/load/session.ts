import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { findWanIpConnection } from './description.js';
import {
  benchMappingArgs,
  type AddMappingsCommand,
  type AddMappingsResult,
  type ConnectionMode,
  type DiscoverCommand,
  type DiscoverResult,
  type ListByIndexCommand,
  type ListInPagesCommand,
  type ListResult,
  type LoadCommand,
  type ResultOf,
  type ThroughputResult,
} from './protocol.js';
import { HttpClient } from './http-client.js';
import { SoapClient, SoapFault, objectAt, parseXml } from './soap-client.js';

const SPECIFIED_ARRAY_INDEX_INVALID = 713;
const PORT_MAPPING_NOT_FOUND = 730;
const DISCOVER_RETRY_MS = 20;
const HIGHEST_PORT = 65535;

/**
 * The control points of a LAN talking to one daemon: discovers its control URL, then runs the
 * phases the harness asks for, each with a new connection per request (`Connection: Close`, as
 * miniupnpc does) or with connections kept while the daemon keeps them open, as the command says.
 */
export class LoadSession {
  private readonly self: LanHost;
  private readonly hosts: readonly LanHost[];

  /**
   * `internalClient`: this host's own LAN address. `hostAddresses`: further addresses of this
   * namespace, each acting as one LAN host (a client is a source address): the request-rate phases
   * and adding the table spread over them as a real LAN's load does, so that no host goes past
   * upnpd's per-client limits (rate of changes, connections). Every mapping points to the host
   * that made it (secure mode). Without them, everything comes from `internalClient`.
   */
  constructor(
    private readonly internalClient: string,
    hostAddresses: readonly string[] = [],
  ) {
    this.self = lanHost(internalClient, undefined);
    this.hosts = hostAddresses.map((address) => lanHost(address, address));
  }

  run<C extends LoadCommand>(command: C): Promise<ResultOf[C['kind']]> {
    return this.dispatch(command) as Promise<ResultOf[C['kind']]>;
  }

  close(): void {
    for (const host of [this.self, ...this.hosts]) for (const http of Object.values(host.http)) http.close();
  }

  private dispatch(command: LoadCommand): Promise<ResultOf[LoadCommand['kind']]> {
    switch (command.kind) {
      case 'discover':
        return this.discover(command);
      case 'getExternalIp':
        // Client k is LAN host k: eight clients are eight hosts, as on a LAN.
        return this.throughput(command, async (worker) => {
          const { client } = this.host(worker, command.connection);
          const { NewExternalIPAddress } = await client.call('GetExternalIPAddress');
          if (NewExternalIPAddress !== command.expectedAddress) {
            throw new Error(`GetExternalIPAddress answered "${NewExternalIPAddress}", expected ${command.expectedAddress}`);
          }
        });
      case 'addDeleteCycles': {
        // Worker w goes round hosts w, w + concurrency, w + 2 × concurrency, …: no two workers share one.
        const { concurrency } = command;
        const turns = new Array<number>(concurrency).fill(0);
        const hostsPerWorker = Math.max(1, Math.floor(this.hosts.length / concurrency));
        return this.throughput(command, async (worker) => {
          const port = command.firstPort + worker;
          const { client, address } = this.host(worker + concurrency * (turns[worker]!++ % hostsPerWorker), command.connection);
          await this.addMapping(client, address, port);
          await client.call('DeletePortMapping', { NewRemoteHost: '', NewExternalPort: port, NewProtocol: 'TCP' });
        });
      }
      case 'addMappings':
        return this.addMappings(command);
      case 'listByIndex':
        return this.listByIndex(command);
      case 'listInPages':
        return this.listInPages(command);
    }
  }

  /** This host's own client (the read-only listings: one client walking the table). */
  private client(connection: ConnectionMode): SoapClient {
    const soap = this.self.soap?.[connection];
    if (!soap) throw new Error('no daemon discovered yet: send a discover command first');
    return soap;
  }

  private async discover({ descriptionUrl, timeoutMs, awaitMappingPort }: DiscoverCommand): Promise<DiscoverResult> {
    const url = new URL(descriptionUrl);
    const start = performance.now();
    const retry = async (what: string, err: unknown) => {
      if (performance.now() - start > timeoutMs) throw new Error(`${what} within ${timeoutMs} ms: ${err instanceof Error ? err.message : String(err)}`);
      await sleep(DISCOVER_RETRY_MS);
    };
    for (;;) {
      try {
        const response = await this.self.http['keep-alive'].request(url, { method: 'GET' });
        if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
        const endpoint = findWanIpConnection(response.body, url);
        for (const host of [this.self, ...this.hosts]) {
          const soap = (connection: ConnectionMode) => new SoapClient(endpoint.controlUrl, endpoint.serviceType, host.http[connection]);
          host.soap = { close: soap('close'), 'keep-alive': soap('keep-alive') };
        }
        break;
      } catch (err) {
        // Not listening yet: keep trying until the time is up.
        await retry(`${descriptionUrl} not served`, err);
      }
    }
    while (awaitMappingPort !== undefined) {
      try {
        await this.client('keep-alive').call('GetSpecificPortMappingEntry', { NewRemoteHost: '', NewExternalPort: awaitMappingPort, NewProtocol: 'TCP' });
        break;
      } catch (err) {
        await retry(`mapping TCP ${awaitMappingPort} not reported`, err);
      }
    }
    const found = this.client('keep-alive');
    return { controlUrl: found.controlUrl.href, serviceType: found.serviceType };
  }

  /** The LAN host number `n` (round the hosts), or this host when there are none. */
  private host(n: number, connection: ConnectionMode): { client: SoapClient; address: string } {
    if (this.hosts.length === 0) return { client: this.client(connection), address: this.internalClient };
    const host = this.hosts[n % this.hosts.length]!;
    const soap = host.soap?.[connection];
    if (!soap) throw new Error('no daemon discovered yet: send a discover command first');
    return { client: soap, address: host.address };
  }

  private addMapping(client: SoapClient, internalClient: string, port: number): Promise<unknown> {
    return client.call('AddPortMapping', benchMappingArgs(internalClient, port));
  }

  /** Runs `op` from `concurrency` workers: first for the warm-up time (not counted), then measured. */
  private async throughput(
    limits: { concurrency: number; warmupMs: number; maxOps: number; maxMs: number },
    op: (worker: number) => Promise<void>,
  ): Promise<ThroughputResult> {
    const warmup = await runWorkers(limits.concurrency, Number.POSITIVE_INFINITY, limits.warmupMs, op);
    return { ...(await runWorkers(limits.concurrency, limits.maxOps, limits.maxMs, op)), warmupOps: warmup.ops };
  }

  private async addMappings({ connection, firstPort, count, checkpoints, maxMs }: AddMappingsCommand): Promise<AddMappingsResult> {
    const start = performance.now();
    const checkpointMs: Record<number, number> = {};
    let added = 0;
    while (added < count && performance.now() - start < maxMs) {
      const { client, address } = this.host(added, connection);
      await this.addMapping(client, address, firstPort + added);
      added += 1;
      if (checkpoints.includes(added)) checkpointMs[added] = performance.now() - start;
    }
    return { added, elapsedMs: performance.now() - start, checkpointMs };
  }

  private async listByIndex({ connection, maxEntries, maxMs }: ListByIndexCommand): Promise<ListResult> {
    const start = performance.now();
    const cpuBefore = process.cpuUsage();
    let entries = 0;
    while (entries < maxEntries && performance.now() - start < maxMs) {
      try {
        await this.client(connection).callExpecting('GetGenericPortMappingEntry', { NewPortMappingIndex: entries }, 'NewExternalPort');
      } catch (err) {
        if (err instanceof SoapFault && err.code === SPECIFIED_ARRAY_INDEX_INVALID) break;
        throw err;
      }
      entries += 1;
    }
    return { entries, calls: entries + 1, elapsedMs: performance.now() - start, cpuMs: cpuMsSince(cpuBefore) };
  }

  /**
   * Pages by port: the next call starts above the highest port listed so far, which assumes the
   * daemon lists in port order (both do). Counts distinct ports, so a daemon that repeats or skips
   * entries shows up as a wrong count rather than a wrong time.
   */
  private async listInPages({ connection, pageSize, maxEntries, maxMs }: ListInPagesCommand): Promise<ListResult> {
    const start = performance.now();
    const cpuBefore = process.cpuUsage();
    const seen = new Set<number>();
    let calls = 0;
    let startPort = 0;
    while (seen.size < maxEntries && startPort <= HIGHEST_PORT && performance.now() - start < maxMs) {
      calls += 1;
      let ports: number[];
      try {
        const { NewPortListing } = await this.client(connection).call('GetListOfPortMappings', {
          NewStartPort: startPort,
          NewEndPort: HIGHEST_PORT,
          NewProtocol: 'TCP',
          NewManage: 1,
          NewNumberOfPorts: pageSize,
        });
        ports = listedPorts(NewPortListing ?? '');
      } catch (err) {
        if (err instanceof SoapFault && err.code === PORT_MAPPING_NOT_FOUND) break;
        throw err;
      }
      for (const port of ports) seen.add(port);
      if (ports.length < pageSize) break;
      startPort = Math.max(...ports) + 1;
    }
    return { entries: seen.size, calls, elapsedMs: performance.now() - start, cpuMs: cpuMsSince(cpuBefore) };
  }
}

/** One LAN host (a source address): a client per way of using connections. */
interface LanHost {
  readonly address: string;
  readonly http: Readonly<Record<ConnectionMode, HttpClient>>;
  soap: Readonly<Record<ConnectionMode, SoapClient>> | undefined;
}

function lanHost(address: string, localAddress: string | undefined): LanHost {
  return { address, http: { close: new HttpClient(localAddress, 'close'), 'keep-alive': new HttpClient(localAddress, 'keep-alive') }, soap: undefined };
}

function cpuMsSince(before: NodeJS.CpuUsage): number {
  const { user, system } = process.cpuUsage(before);
  return (user + system) / 1000;
}

/** The external ports of a PortMappingList document. */
export function listedPorts(portListing: string): number[] {
  const list = objectAt(parseXml(portListing), ['PortMappingList']);
  const raw = list?.PortMappingEntry;
  const entries = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
  return entries.map((entry) => {
    const port = Number((entry as Record<string, unknown>).NewExternalPort);
    if (!Number.isInteger(port)) throw new Error(`a PortMappingEntry without a valid NewExternalPort: ${JSON.stringify(entry)}`);
    return port;
  });
}

/**
 * `concurrency` workers call `op` in turn until `maxOps` calls have started or `maxMs` has passed,
 * with the generator's own CPU time over it. The first failure stops every worker and rejects.
 */
export async function runWorkers(
  concurrency: number,
  maxOps: number,
  maxMs: number,
  op: (worker: number) => Promise<void>,
): Promise<{ ops: number; elapsedMs: number; cpuMs: number }> {
  const start = performance.now();
  const cpuBefore = process.cpuUsage();
  let started = 0;
  let completed = 0;
  let failed = false;
  const worker = async (index: number) => {
    while (!failed && started < maxOps && performance.now() - start < maxMs) {
      started += 1;
      try {
        await op(index);
      } catch (err) {
        failed = true;
        throw err;
      }
      completed += 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, index) => worker(index)));
  return { ops: completed, elapsedMs: performance.now() - start, cpuMs: cpuMsSince(cpuBefore) };
}
