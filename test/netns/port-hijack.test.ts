import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { NamespaceProcess } from './namespace-process.js';
import { describeNetns } from './netns.js';
import { TESTBED_ADDRESSES, createTestbed, startDaemonInGateway, tcpReachable, upnpc, type RunningDaemon, type Testbed } from './topology.js';

// The port-22 hijack, with real packets: a LAN client asks the gateway to forward its external
// port 22 (or any port the gateway itself listens on) to the client. upnpd refuses with 718
// ConflictInMappingEntry (README "Security defaults"), and afterwards a TCP connection from the
// WAN host to the gateway's port still reaches the gateway's own listener, not the LAN client.

const PASSES_MS = 5_000;
const BLOCKED_MS = 1_500;
const LISTENER_START_MS = 10_000;

/** A listener in the gateway namespace that stays up while upnpd is asked (so the kernel's socket table shows it). */
const GATEWAY_SERVICE = `
const [port, lifetime] = process.argv.slice(1).map(Number);
setTimeout(() => process.exit(3), lifetime);
require('node:net').createServer((s) => s.destroy()).listen(port, '0.0.0.0', () => console.log('LISTENING'));
`;

describeNetns(
  'upnpd refuses to hand the gateway’s own ports to a LAN client (real packets)',
  ['ip', 'upnpc', 'iptables', 'iptables-save', 'iptables-restore'],
  () => {
    const a = TESTBED_ADDRESSES;
    let testbed: Testbed;
    let daemon: RunningDaemon | undefined;

    beforeAll(async () => {
      testbed = await createTestbed();
      daemon = await startDaemonInGateway(testbed, ['--lan', testbed.lanInterface, '--wan', testbed.wanInterface, '--backend', 'iptables']);
    });
    afterAll(async () => {
      try {
        await daemon?.stop();
      } finally {
        await testbed?.destroy();
      }
    });
    beforeEach(({ onTestFailed }) => {
      onTestFailed(() => console.error(`upnpd output, last part:\n${daemon?.output().slice(-6000)}`));
    });

    /** Asks for external TCP `port` → the LAN client's same port while a gateway service listens on it; returns upnpc's run. */
    async function askWhileGatewayListens(port: number) {
      const service = NamespaceProcess.start(testbed.gateway, [process.execPath, '-e', GATEWAY_SERVICE, String(port), '60000']);
      try {
        await service.waitFor(/^LISTENING$/m, LISTENER_START_MS);
        return await upnpc(testbed.lan, ['-u', daemon!.url, '-e', 'hijack', '-a', a.lanClient, String(port), String(port), 'TCP', '3600']);
      } finally {
        await service.kill();
      }
    }

    for (const [what, port] of [
      ['ssh (port 22)', 22],
      ['a service on an unprivileged port (2222)', 2222],
    ] as const) {
      it(`${what}: the mapping is refused with 718, and WAN traffic to the port still reaches the gateway`, async () => {
        const run = await askWhileGatewayListens(port);
        expect(run.exitCode, run.output).not.toBe(0);
        expect(run.output).toMatch(/\b718\b/);
        expect(daemon!.output()).toMatch(
          new RegExp(`reserved-ports: refused ${a.lanClient.replace(/\./g, '\\.')} \\((below 1024|the gateway listens on it)\\)`),
        );

        expect(await tcpReachable(testbed.wan, a.gatewayWan, port, testbed.gateway, PASSES_MS)).toBe(true);
        expect(await tcpReachable(testbed.wan, a.gatewayWan, port, testbed.lan, BLOCKED_MS)).toBe(false);
      });
    }

    it('the same unprivileged port maps once the gateway no longer listens on it (the check reads the kernel at request time)', async () => {
      // The socket table is read at most once a second: wait that out after the service ended.
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const run = await upnpc(testbed.lan, ['-u', daemon!.url, '-e', 'game', '-a', a.lanClient, '2222', '2222', 'TCP', '3600']);
      expect(run.exitCode, run.output).toBe(0);
      expect(await tcpReachable(testbed.wan, a.gatewayWan, 2222, testbed.lan, PASSES_MS)).toBe(true);
    });
  },
);
