import { afterAll, beforeAll, beforeEach, expect } from 'vitest';
import { createTestbed, parseUpnpcListing, startDaemonInGateway, upnpc, type ListedMapping, type RunningDaemon, type Testbed } from '../topology.js';
import { arrivalsThrough, type MappedPort } from './arrivals.js';

/** How long probes are sent when they should arrive, and when they should not. */
const PASSES_MS = 2_000;
const BLOCKED_MS = 1_500;
const POLL_MS = 250;

/** upnpd in the testbed's gateway with its defaults (NAT-PMP and PCP on) and the iptables backend. */
export function startUpnpd(testbed: Testbed): Promise<RunningDaemon> {
  return startDaemonInGateway(testbed, ['--lan', testbed.lanInterface, '--wan', testbed.wanInterface, '--backend', 'iptables']);
}

/** A real client under test, as the suite needs it: stopped at the end, its output shown on a failure. */
export interface ClientUnderTest {
  readonly name: string;
  output(): string;
  stop(): Promise<unknown>;
}

export interface GatewayUnderTest {
  readonly testbed: Testbed;
  readonly daemon: RunningDaemon;
}

/**
 * Registers the suite's hooks: a testbed with upnpd in the gateway before all tests; the clients
 * that `clients()` returns, the daemon and the testbed removed after them; on a failure, the
 * daemon's and the clients' output. Returns the gateway (valid inside the tests).
 */
export function upnpdGatewaySuite(clients: () => readonly ClientUnderTest[]): () => GatewayUnderTest {
  let testbed: Testbed | undefined;
  let daemon: RunningDaemon | undefined;
  beforeAll(async () => {
    testbed = await createTestbed();
    daemon = await startUpnpd(testbed);
  });
  afterAll(async () => {
    try {
      for (const client of clients()) await client.stop();
      await daemon?.stop();
    } finally {
      await testbed?.destroy();
    }
  });
  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      console.error(`upnpd output, last part:\n${daemon?.output().slice(-6000)}`);
      for (const client of clients()) console.error(`${client.name} output:\n${client.output()}`);
    });
  });
  return () => {
    if (!testbed || !daemon) throw new Error('the testbed is not set up (beforeAll failed)');
    return { testbed, daemon };
  };
}

/** The gateway's one table as UPnP lists it (GetGenericPortMappingEntry, asked from the second LAN host). */
export async function gatewayTable(testbed: Testbed, daemon: RunningDaemon): Promise<ListedMapping[]> {
  const run = await upnpc(testbed.lan2, ['-u', daemon.url, '-l']);
  expect(run.exitCode, run.output).toBe(0);
  return parseUpnpcListing(run.output);
}

/** The rows of the gateway's table that forward to `internalPort`. */
export async function tableRowsFor({ testbed, daemon }: GatewayUnderTest, internalPort: number): Promise<ListedMapping[]> {
  return (await gatewayTable(testbed, daemon)).filter((row) => row.internalPort === internalPort);
}

/** Polls (bounded) until the gateway's table holds no mapping to `internalPort`; fails with what is left. */
export async function expectMappingsGone(gateway: GatewayUnderTest, internalPort: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let rows = await tableRowsFor(gateway, internalPort);
  while (rows.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    rows = await tableRowsFor(gateway, internalPort);
  }
  expect(rows).toEqual([]);
}

/** Packets from the WAN host arrive at the LAN client through each mapping (a count above zero for each). */
export async function expectTrafficPasses(testbed: Testbed, mappings: readonly MappedPort[]): Promise<void> {
  for (const mapping of mappings) {
    expect(
      await arrivalsThrough(testbed, mapping, PASSES_MS),
      `${mapping.protocol} ${mapping.externalPort} -> ${mapping.internalPort} arrivals`,
    ).toBeGreaterThan(0);
  }
}

/** No packet from the WAN host arrives at the LAN client on any of these ports. */
export async function expectTrafficBlocked(testbed: Testbed, mappings: readonly MappedPort[]): Promise<void> {
  for (const mapping of mappings) {
    expect(await arrivalsThrough(testbed, mapping, BLOCKED_MS), `${mapping.protocol} ${mapping.externalPort} -> ${mapping.internalPort} arrivals`).toBe(0);
  }
}
