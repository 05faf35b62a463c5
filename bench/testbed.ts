import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestbed, type Testbed } from '../test/netns/topology.js';
import { NamespaceProcess, tsEntryCommand } from '../test/netns/namespace-process.js';

/** RFC 5389's default port, and the alternate one for CHANGE-REQUEST. */
const STUN_PORTS = [3478, 3479] as const;
const HELPER_START_MS = 15_000;

export interface BenchTestbed {
  readonly testbed: Testbed;
  readonly stun: { readonly host: string; readonly port: number };
  /** A temporary directory for daemon config and state. */
  readonly workDir: string;
  /** Stops the STUN server, removes every namespace and the work directory. Safe to call twice. */
  destroy(): Promise<void>;
}

/**
 * The testbed of test/netns/topology.ts (LAN clients, gateway, WAN host; nothing in the root
 * namespace) plus a STUN server on the WAN host.
 *
 * The iptables FORWARD policy of the testbed is ACCEPT here: the admin's forward filtering lives in
 * an nftables table (daemons/gateway-firewall.ts) where both daemons open their mapped flows; an
 * accept there cannot override a drop in another table, so an iptables DROP would block both.
 */
export async function createBenchTestbed(lifetimeMs: number): Promise<BenchTestbed> {
  const testbed = await createTestbed({ forwardPolicy: 'ACCEPT' });
  const workDir = mkdtempSync(join(tmpdir(), 'upnpd-bench-'));
  let stunServer: NamespaceProcess | undefined;
  // One removal however many callers ask (the run's end, a signal, the watchdog): a second call
  // waits for the first instead of finding nothing left to do and letting the process exit early.
  let destroying: Promise<void> | undefined;
  const destroy = () =>
    (destroying ??= (async () => {
      await stunServer?.stop('SIGTERM', 5_000);
      await testbed.destroy();
      rmSync(workDir, { recursive: true, force: true });
    })());
  try {
    const host = testbed.addresses.wanHost;
    stunServer = NamespaceProcess.start(
      testbed.wan,
      tsEntryCommand(new URL('./stun/main.ts', import.meta.url), [
        '--address',
        host,
        '--address',
        testbed.addresses.wanHostAlt,
        ...STUN_PORTS.flatMap((port) => ['--port', String(port)]),
        '--lifetime-ms',
        String(lifetimeMs),
      ]),
    );
    await stunServer.waitFor(/^STUN READY/m, HELPER_START_MS);
    return { testbed, stun: { host, port: STUN_PORTS[0] }, workDir, destroy };
  } catch (err) {
    await destroy();
    throw err;
  }
}
