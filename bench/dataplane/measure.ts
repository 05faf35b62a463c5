import type { Testbed } from '../../test/netns/topology.js';
import { NamespaceProcess, tsEntryCommand } from '../../test/netns/namespace-process.js';

const LISTENER_START_MS = 15_000;
/** Per connect, at worst (the probe's own connect timeout is 2 s). */
const PROBE_MS_PER_CONNECT = 2_000;

export interface ConnectLatencyOptions {
  readonly ports: readonly number[];
  readonly samples: number;
  readonly warmup: number;
}

/**
 * TCP connect latency from the WAN host to the gateway's WAN address on each mapped port (DNATed
 * to a listener on the LAN client): every sample per port, in microseconds.
 */
export async function measureConnectLatency(testbed: Testbed, options: ConnectLatencyOptions): Promise<Map<number, number[]>> {
  const portArgs = options.ports.flatMap((port) => ['--port', String(port)]);
  const probeBudgetMs = (options.samples + options.warmup) * options.ports.length * PROBE_MS_PER_CONNECT;
  const listener = NamespaceProcess.start(
    testbed.lan,
    tsEntryCommand(new URL('./listener.ts', import.meta.url), [...portArgs, '--lifetime-ms', String(LISTENER_START_MS + probeBudgetMs)]),
  );
  try {
    await listener.waitFor(/^LISTENING$/m, LISTENER_START_MS);
    const [file, ...args] = tsEntryCommand(new URL('./probe.ts', import.meta.url), [
      '--host',
      testbed.addresses.gatewayWan,
      ...portArgs,
      '--samples',
      String(options.samples),
      '--warmup',
      String(options.warmup),
    ]);
    const output = await testbed.wan.exec(file!, args, { timeoutMs: LISTENER_START_MS + probeBudgetMs });
    const samples = JSON.parse(output.trim().split('\n').pop()!) as Record<string, number[]>;
    return new Map(options.ports.map((port) => [port, samples[port] ?? []]));
  } finally {
    await listener.stop('SIGTERM', 5_000);
  }
}
