import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Listing } from '../../app/control/protocol.js';
import { describeNetns } from './netns.js';
import { NamespaceProcess } from './namespace-process.js';
import {
  createTestbed,
  installNftAdminFirewall,
  startDaemonInGateway,
  upnpc,
  type RunningDaemon,
  type Testbed,
  PUBLIC_API,
  NFT_FORWARD_JUMP_PLUGIN,
} from './topology.js';
import type { TestNamespace } from './netns.js';

// An admin operating a real gateway (nftables backend, the testbed's gateway namespace): a client
// maps with upnpc; the admin sees it in `upnpd list --json`, /metrics and the status page, deletes
// it with `upnpd delete`, and a webhook hears both events. The admin listener is not reachable
// from the WAN side.

const BIN = new URL('../../bin/upnpd.js', import.meta.url).pathname;
const ADMIN_PORT = 9191;
const WEBHOOK_PORT = 9292;
const WAIT_MS = 10_000;

/** Tries one TCP connection from a namespace: 'connected', or the error code (or 'timeout'). */
async function connectFrom(ns: TestNamespace, host: string, port: number): Promise<string> {
  const script = `const s = require('net').connect(${port}, '${host}'); s.on('connect', () => { console.log('connected'); process.exit(0); }); s.on('error', (e) => { console.log(e.code); process.exit(0); }); setTimeout(() => { console.log('timeout'); process.exit(0); }, 3000);`;
  return (await ns.exec(process.execPath, ['-e', script], { timeoutMs: 10_000 })).trim();
}

async function waitForOutput(daemon: RunningDaemon, pattern: RegExp): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!pattern.test(daemon.output()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
}

/** Runs `node -e SCRIPT` in the gateway namespace (its loopback is where the admin listener is). */
async function inGateway(testbed: Testbed, script: string): Promise<string> {
  return testbed.gateway.exec(process.execPath, ['-e', script], { timeoutMs: 15_000 });
}

describeNetns('operating a gateway: control socket, metrics, status page, webhook', ['ip', 'nft', 'upnpc', 'iptables-restore'], () => {
  let testbed: Testbed;
  let scratch: string;
  let daemon: RunningDaemon;
  let webhook: NamespaceProcess;
  const runtimeDir = () => join(scratch, 'run');

  beforeAll(async () => {
    testbed = await createTestbed({ forwardPolicy: 'ACCEPT' });
    await installNftAdminFirewall(testbed);
    scratch = await mkdtemp(join(tmpdir(), 'upnpd-ops-'));
    // A webhook receiver on the gateway's loopback: prints each event body on a line.
    webhook = NamespaceProcess.start(testbed.gateway, [
      process.execPath,
      '-e',
      `require('http').createServer((q, s) => { let b = ''; q.on('data', (c) => (b += c)); q.on('end', () => { console.log('EVENT ' + b); s.end(); }); }).listen(${WEBHOOK_PORT}, '127.0.0.1', () => console.log('listening'))`,
    ]);
    await webhook.waitFor(/listening/, WAIT_MS);
    const config = join(scratch, 'upnpd.config.mjs');
    await writeFile(
      config,
      `import { defineConfig, nftables, notifications } from ${JSON.stringify(PUBLIC_API)};\n` +
        `export default defineConfig({ plugins: [${NFT_FORWARD_JUMP_PLUGIN}, notifications({ webhook: { url: 'http://127.0.0.1:${WEBHOOK_PORT}/hook' } })] });\n`,
    );
    daemon = await startDaemonInGateway(testbed, [
      '--lan',
      testbed.lanInterface,
      '--wan',
      testbed.wanInterface,
      '--config',
      config,
      '--runtime-dir',
      runtimeDir(),
      '--admin-listen',
      `127.0.0.1:${ADMIN_PORT}`,
    ]);
  });
  afterAll(async () => {
    await daemon?.stop();
    await webhook?.kill();
    await testbed?.destroy();
    await rm(scratch, { recursive: true, force: true });
  });

  it('sees an upnpc mapping everywhere, deletes it with upnpd delete, and the webhook hears both', async () => {
    // The daemon answers before its admin listener is up; the metrics count from the start all the same.
    await waitForOutput(daemon, /admin listener/);
    const { lanClient } = testbed.addresses;
    const added = await upnpc(testbed.lan, ['-u', daemon.url, '-e', 'ops test', '-a', lanClient, '7700', '7700', 'TCP', '3600']);
    expect(added.exitCode, added.output).toBe(0);

    const listed = JSON.parse(await testbed.gateway.exec(process.execPath, [BIN, 'list', '--json', '--runtime-dir', runtimeDir()])) as Listing;
    expect(listed.pinholes).toEqual([]);
    expect(listed.mappings).toEqual([
      expect.objectContaining({
        protocol: 'TCP',
        externalPort: 7700,
        internalClient: lanClient,
        internalPort: 7700,
        description: 'ops test',
        createdBy: lanClient,
      }),
    ]);

    const metrics = await inGateway(testbed, `fetch('http://127.0.0.1:${ADMIN_PORT}/metrics').then((r) => r.text()).then(console.log)`);
    expect(metrics).toMatch(/upnpd_mappings\{protocol="TCP",source="upnp-igd:[12]"\} 1/);
    expect(metrics).toMatch(/upnpd_backend_apply_seconds_count\{outcome="applied"\} [1-9]/);
    const page = await inGateway(testbed, `fetch('http://127.0.0.1:${ADMIN_PORT}/').then((r) => r.text()).then(console.log)`);
    expect(page).toMatch(/<td>TCP<\/td><td>7700<\/td><td>192\.168\.77\.10:7700<\/td>/);

    await testbed.gateway.exec(process.execPath, [BIN, 'delete', 'TCP', '7700', '--runtime-dir', runtimeDir()]);
    expect(JSON.parse(await testbed.gateway.exec(process.execPath, [BIN, 'list', '--json', '--runtime-dir', runtimeDir()]))).toEqual({
      mappings: [],
      pinholes: [],
    });
    // The rules went too: nothing of 7700 is left in the kernel.
    expect(await testbed.gateway.exec('nft', ['list', 'ruleset'])).not.toContain('7700');

    await webhook.waitFor(/EVENT .*"event":"unmapped"/, WAIT_MS);
    const events = webhook
      .output()
      .split('\n')
      .filter((line) => line.startsWith('EVENT '))
      .map((line) => JSON.parse(line.slice(6)) as { event: string; externalPort?: number; via?: string });
    expect(events.map((e) => [e.event, e.externalPort])).toEqual([
      ['mapped', 7700],
      ['unmapped', 7700],
    ]);
    expect(events[1]?.via).toBe('control');
  });

  it('the admin listener cannot be reached from the WAN side (nor from the LAN)', async () => {
    const { gatewayWan, gatewayLan } = testbed.addresses;
    expect(await connectFrom(testbed.wan, gatewayWan, ADMIN_PORT)).toBe('ECONNREFUSED');
    expect(await connectFrom(testbed.lan, gatewayLan, ADMIN_PORT)).toBe('ECONNREFUSED');
    // The control: the same check does connect on the gateway's own loopback.
    expect(await connectFrom(testbed.gateway, '127.0.0.1', ADMIN_PORT)).toBe('connected');
  });
});
