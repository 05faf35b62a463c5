import { createSocket, type Socket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { BENCH_LEASE_SECONDS, type AddMappingsResult, type ThroughputResult } from './protocol.js';
import { runWorkers } from './session.js';

/**
 * The NAT-PMP (RFC 6886) load: MAP requests to the gateway's UDP 5351, each LAN host from a socket
 * bound to its own address (a NAT-PMP client is its source address). One request per socket at a
 * time, answered before the next (a closed loop, as a client that waits for its answer is).
 */

/** Map then delete (lifetime 0) TCP firstPort + worker; worker w goes round hosts w, w + concurrency, … (`hostsPerWorker` of them). */
export interface NatPmpCyclesCommand {
  readonly kind: 'natPmpCycles';
  readonly gateway: string;
  readonly concurrency: number;
  readonly hostsPerWorker: number;
  readonly warmupMs: number;
  readonly maxOps: number;
  readonly maxMs: number;
  readonly firstPort: number;
}

/** Map TCP firstPort, firstPort + 1, … (each to the host that asks, the hosts in turn), one at a time, noting when each checkpoint count was reached. */
export interface NatPmpMapManyCommand {
  readonly kind: 'natPmpMapMany';
  readonly gateway: string;
  readonly firstPort: number;
  readonly count: number;
  readonly checkpoints: readonly number[];
  readonly maxMs: number;
}

export type NatPmpCommand = NatPmpCyclesCommand | NatPmpMapManyCommand;

export interface NatPmpResultOf {
  natPmpCycles: ThroughputResult;
  natPmpMapMany: AddMappingsResult;
}

const SERVER_PORT = 5351;
const OP_MAP_TCP = 2;
const RESPONSE_BIT = 128;
const MAP_RESPONSE_LENGTH = 16;
/** Nothing is lost on the testbed's veths: a request unanswered this long means the daemon dropped it. */
const ANSWER_TIMEOUT_MS = 2_000;

export class NatPmpLoad {
  private readonly sockets = new Map<string, Promise<HostSocket>>();

  /** `serverPort`: where the gateway answers (5351; another only for tests on loopback). */
  constructor(
    private readonly hosts: readonly string[],
    private readonly serverPort = SERVER_PORT,
  ) {}

  run<C extends NatPmpCommand>(command: C): Promise<NatPmpResultOf[C['kind']]> {
    if (this.hosts.length === 0) return Promise.reject(new Error('the NAT-PMP load needs LAN host addresses (--host)'));
    return (command.kind === 'natPmpCycles' ? this.cycles(command) : this.mapMany(command)) as Promise<NatPmpResultOf[C['kind']]>;
  }

  close(): void {
    for (const socket of this.sockets.values()) void socket.then((s) => s.close());
  }

  private async cycles(command: NatPmpCyclesCommand): Promise<ThroughputResult> {
    const { concurrency, hostsPerWorker } = command;
    if (concurrency * hostsPerWorker > this.hosts.length) throw new Error(`${concurrency} × ${hostsPerWorker} hosts asked for, ${this.hosts.length} available`);
    const turns = new Array<number>(concurrency).fill(0);
    const op = async (worker: number) => {
      const port = command.firstPort + worker;
      const host = await this.socket(this.hosts[worker + concurrency * (turns[worker]!++ % hostsPerWorker)]!);
      await host.map(command.gateway, port, port, BENCH_LEASE_SECONDS);
      await host.map(command.gateway, port, 0, 0);
    };
    const warmup = await runWorkers(concurrency, Number.POSITIVE_INFINITY, command.warmupMs, op);
    return { ...(await runWorkers(concurrency, command.maxOps, command.maxMs, op)), warmupOps: warmup.ops };
  }

  private async mapMany({ gateway, firstPort, count, checkpoints, maxMs }: NatPmpMapManyCommand): Promise<AddMappingsResult> {
    const start = performance.now();
    const checkpointMs: Record<number, number> = {};
    let added = 0;
    while (added < count && performance.now() - start < maxMs) {
      const host = await this.socket(this.hosts[added % this.hosts.length]!);
      const port = firstPort + added;
      const granted = await host.map(gateway, port, port, BENCH_LEASE_SECONDS);
      if (granted !== port) throw new Error(`NAT-PMP map of free port ${port} was granted external port ${granted}`);
      added += 1;
      if (checkpoints.includes(added)) checkpointMs[added] = performance.now() - start;
    }
    return { added, elapsedMs: performance.now() - start, checkpointMs };
  }

  private socket(address: string): Promise<HostSocket> {
    let socket = this.sockets.get(address);
    if (!socket) {
      socket = HostSocket.open(address, this.serverPort);
      this.sockets.set(address, socket);
    }
    return socket;
  }
}

/** One LAN host's NAT-PMP socket: one request at a time. */
class HostSocket {
  private pending: { resolve: (answer: Buffer) => void; reject: (err: Error) => void } | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly address: string,
    private readonly serverPort: number,
  ) {
    socket.on('message', (message) => {
      const pending = this.pending;
      this.pending = undefined;
      pending?.resolve(message);
    });
    socket.on('error', (err) => {
      const pending = this.pending;
      this.pending = undefined;
      pending?.reject(err);
    });
  }

  static open(address: string, serverPort: number): Promise<HostSocket> {
    return new Promise((resolve, reject) => {
      const socket = createSocket('udp4');
      socket.once('error', reject);
      socket.bind(0, address, () => {
        socket.off('error', reject);
        resolve(new HostSocket(socket, address, serverPort));
      });
    });
  }

  /**
   * A TCP MAP request; resolves with the external port granted. Lifetime 0 (with external port 0)
   * deletes. Rejects on a result code other than success, a malformed answer or no answer.
   */
  async map(gateway: string, internalPort: number, externalPort: number, lifetimeSeconds: number): Promise<number> {
    const request = Buffer.alloc(12);
    request.writeUInt8(OP_MAP_TCP, 1);
    request.writeUInt16BE(internalPort, 4);
    request.writeUInt16BE(externalPort, 6);
    request.writeUInt32BE(lifetimeSeconds, 8);
    const answer = await this.exchange(gateway, request);
    const what = `NAT-PMP map ${internalPort} (lifetime ${lifetimeSeconds}) from ${this.address}`;
    if (answer.length < MAP_RESPONSE_LENGTH || answer.readUInt8(0) !== 0 || answer.readUInt8(1) !== OP_MAP_TCP + RESPONSE_BIT) {
      throw new Error(`${what}: malformed answer ${answer.toString('hex')}`);
    }
    const result = answer.readUInt16BE(2);
    if (result !== 0) throw new Error(`${what}: result code ${result}`);
    if (answer.readUInt16BE(8) !== internalPort) throw new Error(`${what}: answer for internal port ${answer.readUInt16BE(8)}`);
    return answer.readUInt16BE(10);
  }

  close(): void {
    this.socket.close();
  }

  private exchange(gateway: string, request: Buffer): Promise<Buffer> {
    if (this.pending) return Promise.reject(new Error(`${this.address}: a NAT-PMP request is already outstanding`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = undefined;
        reject(new Error(`${this.address}: no NAT-PMP answer from ${gateway} within ${ANSWER_TIMEOUT_MS} ms`));
      }, ANSWER_TIMEOUT_MS);
      this.pending = {
        resolve: (answer) => {
          clearTimeout(timer);
          resolve(answer);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      this.socket.send(request, this.serverPort, gateway);
    });
  }
}
