import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HOST_INTERFACE, TESTBED_IPV6_ADDRESSES, createTestbed, type Testbed } from '../test/netns/topology.js';
import { NamespaceProcess, tsEntryCommand } from '../test/netns/namespace-process.js';
import type { GatewaySetup } from './daemons/types.js';

/**
 * LAN hosts the state-changing load is spread over, as on a real LAN: each an address of the LAN
 * client's namespace (192.168.77.100–199). 100 of them keep every host under upnpd's default
 * per-client rate limit (limits.stateChanges, 32 a second) at the rates measured (about 2,800
 * adds and deletes a second), and their keep-alive connections under its 128 per address.
 */
export const BENCH_LAN_HOSTS = 100;
const FIRST_LAN_HOST = 100;
/**
 * IPv6 LAN hosts the pinhole load is spread over (2001:db8:77::100–11f, in the LAN client's
 * namespace): 1000 pinholes make 32 each (under upnpd's default quota of 128 per client), and 32
 * of them allow 1,024 AddPinholes a second under its default per-client rate (32 a second).
 */
export const BENCH_LAN_IPV6_HOSTS = 32;
const FIRST_LAN_IPV6_HOST = 0x100;

/** RFC 5389's default port, and the alternate one for CHANGE-REQUEST. */
const STUN_PORTS = [3478, 3479] as const;
const HELPER_START_MS = 15_000;

export interface BenchTestbed {
  readonly testbed: Testbed;
  readonly stun: { readonly host: string; readonly port: number };
  /** The LAN hosts' addresses (BENCH_LAN_HOSTS of them, all in the LAN client's namespace). */
  readonly lanHosts: readonly string[];
  /** The IPv6 LAN hosts' addresses (BENCH_LAN_IPV6_HOSTS of them, in the LAN client's namespace). */
  readonly lanHosts6: readonly string[];
  /** A temporary directory for daemon config and state. */
  readonly workDir: string;
  /** Stops the STUN server, removes every namespace and the work directory. Safe to call twice. */
  destroy(): Promise<void>;
}

/**
 * The testbed of test/netns/topology.ts (LAN clients, gateway, WAN host; nothing in the root
 * namespace), with the IPv6 addresses of TESTBED_IPV6_ADDRESSES (for the pinhole rows), plus a STUN
 * server on the WAN host.
 *
 * The iptables FORWARD policy of the testbed is ACCEPT here: the admin's forward filtering lives in
 * an nftables table (daemons/gateway-firewall.ts) where both daemons open their mapped flows; an
 * accept there cannot override a drop in another table, so an iptables DROP would block both.
 */
export async function createBenchTestbed(lifetimeMs: number): Promise<BenchTestbed> {
  const testbed = await createTestbed({ forwardPolicy: 'ACCEPT', ipv6: true });
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
  const lanPrefix = testbed.addresses.lanClient.slice(0, testbed.addresses.lanClient.lastIndexOf('.') + 1);
  const lanHosts = Array.from({ length: BENCH_LAN_HOSTS }, (_, i) => `${lanPrefix}${FIRST_LAN_HOST + i}`);
  const lanPrefix6 = TESTBED_IPV6_ADDRESSES.lanPrefix.replace(/::\/\d+$/, '::');
  const lanHosts6 = Array.from({ length: BENCH_LAN_IPV6_HOSTS }, (_, i) => `${lanPrefix6}${(FIRST_LAN_IPV6_HOST + i).toString(16)}`);
  try {
    for (const address of lanHosts6)
      await testbed.lan.exec('ip', ['-6', 'addr', 'add', `${address}/${TESTBED_IPV6_ADDRESSES.prefixLength}`, 'dev', HOST_INTERFACE, 'nodad']);
    for (const address of lanHosts) await testbed.lan.exec('ip', ['addr', 'add', `${address}/${testbed.addresses.prefixLength}`, 'dev', HOST_INTERFACE]);
    // A new connection per request, thousands a second from one address: let the LAN namespace
    // (only it: the setting is per namespace) reuse its ports in TIME_WAIT, as a busy client would.
    await testbed.lan.exec('sysctl', ['-q', '-w', 'net.ipv4.tcp_tw_reuse=1']);
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
    return { testbed, stun: { host, port: STUN_PORTS[0] }, lanHosts, lanHosts6, workDir, destroy };
  } catch (err) {
    await destroy();
    throw err;
  }
}

/** Removes the testbed on Ctrl-C or SIGTERM; returns a function that uninstalls the handlers. */
export function removeOnSignal(bench: BenchTestbed): () => void {
  let received = false;
  // A Ctrl-C reaches us twice (from the terminal and relayed by tsx): act on the first only.
  const handler = (signal: NodeJS.Signals) => {
    if (received) return;
    received = true;
    process.stderr.write(`bench: ${signal}: removing the testbed\n`);
    void bench.destroy().finally(() => process.exit(130));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

/** What a daemon under test is told about this testbed's gateway, listening on `httpPort`. */
export function gatewaySetup(bench: BenchTestbed, httpPort: number): GatewaySetup {
  return { testbed: bench.testbed, workDir: bench.workDir, httpPort, stun: bench.stun, lanHosts: bench.lanHosts, lanHosts6: bench.lanHosts6 };
}
