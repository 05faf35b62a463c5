import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { NamespaceProcess } from './namespace-process.js';
import { oneClientLoadConfig } from '../support/load-limits.js';
import { describeNetns } from './netns.js';
import {
  TESTBED_ADDRESSES,
  createTestbed,
  installNftAdminFirewall,
  parseUpnpcListing,
  startDaemonInGateway,
  upnpc,
  type RunningDaemon,
  type Testbed,
  PUBLIC_API,
  NFT_FORWARD_JUMP_PLUGIN,
} from './topology.js';

// kill -9 under load: miniupnpc clients in the LAN namespace add (and delete) mappings as fast as
// the daemon (nftables backend, in the gateway namespace) answers; the daemon is killed at a
// random moment. After a restart, the restored table must equal what was acknowledged (every
// add answered with success, minus the deletions answered with success), and the kernel must
// hold exactly the restored table's rules: nothing lost, no orphan. The one exception no daemon
// can avoid: the request each client had in flight at the kill (its first call without an
// answer) may have been made durable without its answer getting out; it may land either way.

const KILLS = 5;
/** Parallel upnpc loops in the LAN namespace; each works on its own port range. */
const CLIENTS = 6;
/** Each loop's port range (bounded, so a loop ends by itself). */
const PORTS_PER_CLIENT = 400;
/** The daemon is killed this long after the load started (random within). */
const KILL_AFTER_MS: readonly [number, number] = [800, 2_500];

/**
 * One upnpc loop: adds ports first..first+count-1, and deletes every 4th port it added just
 * before; prints `TRY add P` before each call and `ACK add P` (`ACK del P`) after each success.
 * Ends when the range is done, or once the file `killed` exists (the test makes it just before the
 * kill), so that no call starts against a dead daemon.
 */
function loadScript(url: string, client: string, first: number, killed: string): string {
  return `
i=0
while [ $i -lt ${PORTS_PER_CLIENT} ]; do
  [ -e '${killed}' ] && exit 0
  p=$((${first} + i))
  echo "TRY add $p"
  out=$(upnpc -u '${url}' -e crash -a ${client} $p $p TCP 3600 2>&1)
  if echo "$out" | grep -q 'is redirected to internal'; then echo "ACK add $p"; else echo "ERR add $p $(echo "$out" | grep -i 'fail\\|error' | head -1)"; fi
  if [ $((i % 4)) -eq 3 ]; then
    q=$((p - 1))
    [ -e '${killed}' ] && exit 0
    echo "TRY del $q"
    out=$(upnpc -u '${url}' -d $q TCP 2>&1)
    if echo "$out" | grep -q 'returned : 0'; then echo "ACK del $q"; else echo "ERR del $q $(echo "$out" | grep -i 'fail\\|error\\|returned' | head -1)"; fi
  fi
  i=$((i+1))
done
`;
}

interface NftListing {
  readonly nftables: ReadonlyArray<{ readonly set?: NftContainer; readonly map?: NftContainer }>;
}
interface NftContainer {
  readonly family: string;
  readonly table: string;
  readonly name: string;
  readonly elem?: readonly unknown[];
}

/** The external ports in upnpd's DNAT map and the target ports in its forward-accept set. */
async function kernelPorts(testbed: Testbed): Promise<{ dnat: number[]; accept: number[] }> {
  const listing = JSON.parse(await testbed.gateway.exec('nft', ['--json', 'list', 'ruleset'])) as NftListing;
  const portsOf = (name: string) =>
    listing.nftables
      .flatMap(({ set, map }) => ((set ?? map)?.name === name ? ((set ?? map)!.elem ?? []) : []))
      .map((element) => {
        const key: unknown = Array.isArray(element) ? element[0] : element;
        const parts = key && typeof key === 'object' && 'concat' in key && Array.isArray(key.concat) ? (key.concat as unknown[]) : [key];
        return Number(parts.at(-1));
      })
      .sort((a, b) => a - b);
  return { dnat: portsOf('dnat-any'), accept: portsOf('upnpd-accept') };
}

describeNetns('kill -9 under load (nftables backend, real daemon)', ['ip', 'upnpc', 'nft'], () => {
  let testbed: Testbed;
  let scratchDir: string;
  let daemonArgs: string[];
  let daemon: RunningDaemon | undefined;

  beforeAll(async () => {
    scratchDir = await mkdtemp(join(tmpdir(), 'upnpd-crash-'));
    testbed = await createTestbed({ forwardPolicy: 'ACCEPT' });
    await installNftAdminFirewall(testbed);
    const configFile = join(scratchDir, 'upnpd.config.mjs');
    await writeFile(configFile, oneClientLoadConfig(PUBLIC_API, [NFT_FORWARD_JUMP_PLUGIN]));
    daemonArgs = ['--lan', testbed.lanInterface, '--wan', testbed.wanInterface, '--config', configFile, '--state-dir', join(scratchDir, 'state')];
  });

  afterAll(async () => {
    await daemon?.kill();
    await testbed?.destroy();
    if (scratchDir) await rm(scratchDir, { recursive: true, force: true });
  });

  it(`after each of ${KILLS} kills, the restored table is exactly the acknowledged set and the kernel holds exactly its rules`, async () => {
    const acknowledged = new Set<number>();
    for (let round = 0; round < KILLS; round++) {
      daemon = await startDaemonInGateway(testbed, daemonArgs);
      // What the previous round left must be back, as rules too.
      const before = parseUpnpcListing((await upnpc(testbed.lan, ['-u', daemon.url, '-l'])).output).map((m) => m.externalPort);
      expect(before.sort((a, b) => a - b)).toEqual([...acknowledged].sort((a, b) => a - b));

      const killed = join(scratchDir, `killed-${round}`);
      const loads = Array.from({ length: CLIENTS }, (_, c) =>
        NamespaceProcess.start(testbed.lan, [
          'sh',
          '-c',
          loadScript(daemon!.url, TESTBED_ADDRESSES.lanClient, 30000 + round * CLIENTS * PORTS_PER_CLIENT + c * PORTS_PER_CLIENT, killed),
        ]),
      );
      const [low, high] = KILL_AFTER_MS;
      await new Promise((resolve) => setTimeout(resolve, low + Math.random() * (high - low)));
      await writeFile(killed, '');
      await daemon.kill();
      daemon = undefined;
      // With the daemon gone, every loop runs out quickly (connection refused); bounded anyway.
      for (const load of loads) await load.stop('SIGTERM', 60_000);
      let acks = 0;
      // A call without a success answer may have been done or not: the one each loop had in flight
      // at the kill, and any other that failed without a UPnP answer (a timeout on a loaded machine).
      const inDoubt = new Map<number, string>();
      for (const load of loads) {
        for (const [, kind, op, port, why] of load.output().matchAll(/^(TRY|ACK|ERR) (add|del) (\d+) ?(.*)$/gm)) {
          if (kind === 'TRY') {
            inDoubt.set(Number(port), 'no answer (in flight at the kill)');
            continue;
          }
          if (kind === 'ERR') {
            inDoubt.set(Number(port), why || 'failed');
            continue;
          }
          inDoubt.delete(Number(port));
          acks += 1;
          if (op === 'add') acknowledged.add(Number(port));
          else acknowledged.delete(Number(port));
        }
      }
      expect(acks, `round ${round}: the load got answers before the kill`).toBeGreaterThan(0);
      // One per loop at the kill; a loaded machine may time out a few more, never many.
      expect(inDoubt.size, `round ${round}: calls in doubt: ${JSON.stringify([...inDoubt])}`).toBeLessThanOrEqual(CLIENTS * 4);

      daemon = await startDaemonInGateway(testbed, daemonArgs);
      const restored = parseUpnpcListing((await upnpc(testbed.lan, ['-u', daemon.url, '-l'])).output)
        .map((m) => m.externalPort)
        .sort((a, b) => a - b);
      const lost = [...acknowledged].filter((p) => !restored.includes(p) && !inDoubt.has(p));
      const unasked = restored.filter((p) => !acknowledged.has(p) && !inDoubt.has(p));
      expect({ lost, unasked }, `round ${round}: ${acks} answers, ${restored.length} restored, in doubt: ${JSON.stringify([...inDoubt])}`).toEqual({
        lost: [],
        unasked: [],
      });
      // The calls in doubt are settled now: the daemon's table says how.
      for (const p of inDoubt.keys()) {
        if (restored.includes(p)) acknowledged.add(p);
        else acknowledged.delete(p);
      }
      const kernel = await kernelPorts(testbed);
      expect(kernel.dnat, `round ${round}: DNAT map`).toEqual(restored);
      expect(kernel.accept, `round ${round}: forward accept set`).toEqual(restored);
      await daemon.kill();
      daemon = undefined;
    }
  }, 600_000);
});
