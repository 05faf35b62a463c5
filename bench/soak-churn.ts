// The soak's load, run on the LAN client (bench/soak.ts starts it there):
// `soak-churn.ts --description-url URL --host ADDR [--host ADDR …] --rate N --target N --min-lease S
// --max-lease S --duration-ms N --lifetime-ms N`.
// Keeps adding mappings with short leases on a rotating port range, renews some, deletes some and
// lists now and then, at a bounded rate, so that about `--target` mappings exist and most of them
// end by running out of lease. Commands on stdin, one a line: `pause` (answers `PAUSED` once no
// request is in flight), `resume` (`RESUMED`), `stats` (`STATS {json}`), `stop` (`STOPPED {json}`,
// then exits). Every loop is bounded by a count and a time: the churn ends after --duration-ms, the
// process after --lifetime-ms.
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { stopOnSignalOrAfter } from './lifetime.js';
import { findWanIpConnection } from './load/description.js';
import { HttpClient } from './load/http-client.js';
import { SoapClient, SoapFault } from './load/soap-client.js';

/** The ports the mappings rotate over (both protocols): a port comes back after thousands of adds. */
const FIRST_PORT = 20_000;
const PORTS = 20_000;
const DESCRIPTION = 'soak';
/** A port is reused only this long after its lease ran out (the daemon's expiry pass has removed it by then). */
const REUSE_AFTER_EXPIRY_MS = 10_000;
/** Renewals and deletions go only to mappings with more lease left than this (no race with their expiry). */
const SAFE_MARGIN_MS = 2_000;
const MAX_IN_FLIGHT = 16;
const DISCOVER_TIMEOUT_MS = 20_000;
const DISCOVER_RETRY_MS = 100;
const PAUSE_TIMEOUT_MS = 15_000;
const HIGHEST_PORT = 65535;
const NO_SUCH_ENTRY_IN_ARRAY = 714;
const SPECIFIED_ARRAY_INDEX_INVALID = 713;
const PORT_MAPPING_NOT_FOUND = 730;

type Protocol = 'TCP' | 'UDP';

interface Mapping {
  readonly protocol: Protocol;
  readonly port: number;
  readonly host: Host;
  /** Epoch ms (both processes share the clock) from which its lease may have run out: its last grant's request time plus the lease. */
  expiresAt: number;
  /** Epoch ms by which its lease has run out: its last grant's answer time plus the lease. */
  goneBy: number;
  /** A request about it is in flight: nothing else is sent about it until it returns. */
  busy: boolean;
}

interface Host {
  readonly address: string;
  readonly http: HttpClient;
  soap: SoapClient | undefined;
}

/** What `stats` and `stop` answer (soak.ts reads it). */
export interface ChurnStats {
  readonly requests: number;
  readonly adds: number;
  readonly renewals: number;
  readonly deletes: number;
  readonly reads: number;
  /** Deletions answered 714 (the lease had run out after all): not an error. */
  readonly deletesAfterExpiry: number;
  /** UPnP faults by code, other than those above. */
  readonly faults: Readonly<Record<string, number>>;
  /** Failures that were not UPnP faults (timeouts, HTTP errors), with the last one's message. */
  readonly errors: number;
  readonly lastError: string;
  /** Ticks with MAX_IN_FLIGHT requests in flight already (the daemon is slower than the rate). */
  readonly skippedTicks: number;
  /** Mappings the client believes exist now. */
  readonly live: number;
  /** Epoch ms when the last lease granted runs out. */
  readonly lastExpiry: number;
}

class Churn {
  private readonly live = new Map<string, Mapping>();
  /** Key → epoch ms from which the port may be used again. */
  private readonly coolingDown = new Map<string, number>();
  private nextPort = 0;
  private nextHost = 0;
  private inFlight = 0;
  private paused = false;
  private stopped = false;
  private readonly idleWaiters: Array<() => void> = [];
  private readonly counts = { requests: 0, adds: 0, renewals: 0, deletes: 0, reads: 0, deletesAfterExpiry: 0, errors: 0, skippedTicks: 0 };
  private readonly faults: Record<string, number> = {};
  private lastError = '';
  private lastExpiry = 0;

  constructor(
    private readonly hosts: readonly Host[],
    private readonly target: number,
    /** Leases asked for, in seconds, uniformly at random in [min, max]. */
    private readonly lease: { readonly min: number; readonly max: number },
  ) {}

  stats(): ChurnStats {
    this.forgetExpired(Date.now());
    return { ...this.counts, faults: { ...this.faults }, lastError: this.lastError, live: this.live.size, lastExpiry: this.lastExpiry };
  }

  /** One request every 1000/rate ms until stopped, `maxMs` has passed or `maxTicks` ticks. */
  async run(rate: number, maxMs: number): Promise<void> {
    const interval = 1000 / rate;
    const start = performance.now();
    const maxTicks = Math.ceil((maxMs / 1000) * rate) + 1;
    for (let tick = 0; tick < maxTicks && !this.stopped; tick += 1) {
      const due = start + tick * interval;
      if (due - start > maxMs) break;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      if (this.paused || this.stopped) continue;
      if (this.inFlight >= MAX_IN_FLIGHT) {
        this.counts.skippedTicks += 1;
        continue;
      }
      this.inFlight += 1;
      void this.step().finally(() => {
        this.inFlight -= 1;
        if (this.inFlight === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
      });
    }
    this.stopped = true;
  }

  async pause(): Promise<boolean> {
    this.paused = true;
    return this.idle();
  }

  resume(): void {
    this.paused = false;
  }

  async stop(): Promise<boolean> {
    this.stopped = true;
    return this.idle();
  }

  /** Resolves once no request is in flight (true), or after PAUSE_TIMEOUT_MS (false). */
  private idle(): Promise<boolean> {
    if (this.inFlight === 0) return Promise.resolve(true);
    return Promise.race([new Promise<boolean>((resolve) => this.idleWaiters.push(() => resolve(true))), sleep(PAUSE_TIMEOUT_MS).then(() => false)]);
  }

  /** One request, chosen to keep about `target` mappings: add below it, renew or delete above it, list now and then. */
  private async step(): Promise<void> {
    const now = Date.now();
    this.forgetExpired(now);
    const r = Math.random();
    const below = this.live.size < this.target;
    if (r < 0.05) return this.read();
    if (below ? r < 0.75 : r < 0.1) return this.add(now);
    const candidates = [...this.live.values()].filter((m) => !m.busy && m.expiresAt - now > SAFE_MARGIN_MS);
    const mapping = candidates[Math.floor(Math.random() * candidates.length)];
    if (!mapping) return this.add(now);
    if (below ? r < 0.9 : r < 0.65) return this.renew(mapping);
    return this.delete(mapping);
  }

  private async add(now: number): Promise<void> {
    const protocol: Protocol = Math.random() < 0.5 ? 'TCP' : 'UDP';
    let port: number | undefined;
    for (let tries = 0; tries < PORTS && port === undefined; tries += 1) {
      const candidate = FIRST_PORT + (this.nextPort++ % PORTS);
      const key = keyOf(protocol, candidate);
      if (!this.live.has(key) && (this.coolingDown.get(key) ?? 0) <= now) port = candidate;
    }
    if (port === undefined) return;
    const host = this.hosts[this.nextHost++ % this.hosts.length]!;
    const mapping: Mapping = { protocol, port, host, expiresAt: 0, goneBy: 0, busy: true };
    const key = keyOf(protocol, port);
    this.live.set(key, mapping);
    this.counts.adds += 1;
    if (!(await this.map(mapping))) {
      // Refused or failed: it may or may not exist; keep the port out of use past any lease it got.
      this.live.delete(key);
      this.coolingDown.set(key, mapping.goneBy + REUSE_AFTER_EXPIRY_MS);
    }
  }

  private async renew(mapping: Mapping): Promise<void> {
    mapping.busy = true;
    this.counts.renewals += 1;
    await this.map(mapping);
  }

  /** AddPortMapping for `mapping` with a new random lease; whether it was granted. */
  private async map(mapping: Mapping): Promise<boolean> {
    const lease = this.lease.min + Math.floor(Math.random() * (this.lease.max - this.lease.min + 1));
    const sent = Date.now();
    const ok = await this.call(mapping.host, 'AddPortMapping', {
      NewRemoteHost: '',
      NewExternalPort: mapping.port,
      NewProtocol: mapping.protocol,
      NewInternalPort: mapping.port,
      NewInternalClient: mapping.host.address,
      NewEnabled: 1,
      NewPortMappingDescription: DESCRIPTION,
      NewLeaseDuration: lease,
    });
    mapping.busy = false;
    // Granted or not (a timeout may hide a grant), the lease may run until then.
    mapping.goneBy = Math.max(mapping.goneBy, Date.now() + lease * 1000);
    this.lastExpiry = Math.max(this.lastExpiry, mapping.goneBy);
    if (ok) mapping.expiresAt = sent + lease * 1000;
    return ok;
  }

  private async delete(mapping: Mapping): Promise<void> {
    mapping.busy = true;
    this.counts.deletes += 1;
    const key = keyOf(mapping.protocol, mapping.port);
    await this.call(mapping.host, 'DeletePortMapping', { NewRemoteHost: '', NewExternalPort: mapping.port, NewProtocol: mapping.protocol }, [
      NO_SUCH_ENTRY_IN_ARRAY,
    ]);
    this.live.delete(key);
    // A delete that failed may have left it in place until its lease runs out.
    this.coolingDown.set(key, mapping.goneBy + REUSE_AFTER_EXPIRY_MS);
  }

  /** A listing request from a random host: one page of GetListOfPortMappings, or one GetGenericPortMappingEntry. */
  private async read(): Promise<void> {
    this.counts.reads += 1;
    const host = this.hosts[Math.floor(Math.random() * this.hosts.length)]!;
    if (Math.random() < 0.5) {
      await this.call(
        host,
        'GetListOfPortMappings',
        { NewStartPort: 0, NewEndPort: HIGHEST_PORT, NewProtocol: Math.random() < 0.5 ? 'TCP' : 'UDP', NewManage: 1, NewNumberOfPorts: 1000 },
        [PORT_MAPPING_NOT_FOUND],
      );
    } else {
      const index = Math.floor(Math.random() * Math.max(1, this.live.size));
      await this.call(host, 'GetGenericPortMappingEntry', { NewPortMappingIndex: index }, [SPECIFIED_ARRAY_INDEX_INVALID]);
    }
  }

  /** Calls an action; counts the outcome. True when it succeeded; `expected` faults count apart and return false. */
  private async call(host: Host, action: string, args: Record<string, string | number>, expected: readonly number[] = []): Promise<boolean> {
    this.counts.requests += 1;
    try {
      await host.soap!.call(action, args);
      return true;
    } catch (err) {
      if (err instanceof SoapFault && expected.includes(err.code)) {
        if (err.code === NO_SUCH_ENTRY_IN_ARRAY) this.counts.deletesAfterExpiry += 1;
        return false;
      }
      if (err instanceof SoapFault) {
        const key = `${action} ${err.code}`;
        this.faults[key] = (this.faults[key] ?? 0) + 1;
      } else {
        this.counts.errors += 1;
        this.lastError = `${action}: ${err instanceof Error ? err.message : String(err)}`;
      }
      return false;
    }
  }

  /** Drops the mappings whose lease has run out: the daemon removes them, and their ports cool down. */
  private forgetExpired(now: number): void {
    for (const [key, mapping] of this.live) {
      if (!mapping.busy && mapping.expiresAt <= now) {
        this.live.delete(key);
        this.coolingDown.set(key, mapping.goneBy + REUSE_AFTER_EXPIRY_MS);
      }
    }
    for (const [key, until] of this.coolingDown) if (until <= now) this.coolingDown.delete(key);
  }
}

function keyOf(protocol: Protocol, port: number): string {
  return `${protocol}/${port}`;
}

/** Fetches the description (retrying until the daemon serves it) and points every host's SOAP client at its WANIPConnection. */
async function discover(descriptionUrl: string, hosts: readonly Host[]): Promise<void> {
  const url = new URL(descriptionUrl);
  const start = performance.now();
  for (;;) {
    try {
      const response = await hosts[0]!.http.request(url, { method: 'GET' });
      if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
      const endpoint = findWanIpConnection(response.body, url);
      for (const host of hosts) host.soap = new SoapClient(endpoint.controlUrl, endpoint.serviceType, host.http);
      return;
    } catch (err) {
      if (performance.now() - start > DISCOVER_TIMEOUT_MS)
        throw new Error(`${descriptionUrl} not served within ${DISCOVER_TIMEOUT_MS} ms: ${String(err)}`, { cause: err });
      await sleep(DISCOVER_RETRY_MS);
    }
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'description-url': { type: 'string' },
      host: { type: 'string', multiple: true },
      rate: { type: 'string' },
      target: { type: 'string' },
      'min-lease': { type: 'string' },
      'max-lease': { type: 'string' },
      'duration-ms': { type: 'string' },
      'lifetime-ms': { type: 'string' },
    },
  });
  const [rate, target, minLease, maxLease, durationMs, lifetimeMs] = (['rate', 'target', 'min-lease', 'max-lease', 'duration-ms', 'lifetime-ms'] as const).map(
    (name) => Number(values[name]),
  ) as [number, number, number, number, number, number];
  if (
    !values['description-url'] ||
    !values.host?.length ||
    ![rate, target, minLease, maxLease, durationMs, lifetimeMs].every((n) => n > 0) ||
    minLease > maxLease
  ) {
    throw new Error(
      'usage: soak-churn.ts --description-url URL --host ADDR [--host ADDR …] --rate N --target N --min-lease S --max-lease S --duration-ms N --lifetime-ms N',
    );
  }
  const hosts: Host[] = values.host.map((address) => ({ address, http: new HttpClient(address), soap: undefined }));
  const closeAll = () => hosts.forEach((host) => host.http.close());
  stopOnSignalOrAfter(lifetimeMs, closeAll);
  await discover(values['description-url'], hosts);

  const churn = new Churn(hosts, target, { min: minLease, max: maxLease });
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const running = churn.run(rate, durationMs);
  createInterface({ input: process.stdin })
    .on('line', (line) => {
      const command = line.trim();
      if (command === 'pause') void churn.pause().then((idle) => say(idle ? 'PAUSED' : 'PAUSE TIMEOUT'));
      else if (command === 'resume') say((churn.resume(), 'RESUMED'));
      else if (command === 'stats') say(`STATS ${JSON.stringify(churn.stats())}`);
      else if (command === 'stop') {
        void churn.stop().then(async () => {
          await running;
          say(`STOPPED ${JSON.stringify(churn.stats())}`);
          closeAll();
          process.exit(0);
        });
      }
    })
    // The harness closed our stdin: it is gone.
    .on('close', () => {
      closeAll();
      process.exit(0);
    });
  say('CHURN READY');
  await running;
}

await main().catch((err: unknown) => {
  process.stderr.write(`soak-churn: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
