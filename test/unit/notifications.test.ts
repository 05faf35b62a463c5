import 'reflect-metadata';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { container } from 'tsyringe';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { CLOCK, LOGGER, PLUGIN_OPTIONS, REFUSALS, RefusalRegistry, defineBackend, notifications, type Plugin, type PortMapping } from 'upnpd';
import { startDaemon } from '../../app/compose.js';
import { systemClock } from '../../core/clock.js';
import { configSchema } from '../../core/config/schema.js';
import { createRootLogger } from '../../core/logging.js';
import { SIGNATURE_HEADER } from '../../plugins/notifications/webhook.js';
import { RecordingBackend, RecordingLogger } from '../support/fakes.js';

const scratch = mkdtempSync(join(tmpdir(), 'upnpd-notify-'));
const WAIT_MS = 10_000;

const MAPPING: PortMapping = {
  remoteHost: '',
  externalPort: 8080,
  protocol: 'TCP',
  internalClient: '192.168.1.20',
  internalPort: 80,
  enabled: true,
  description: 'web',
  leaseSeconds: 3600,
  expiresAt: null,
  createdBy: { address: '192.168.1.20', via: 'upnp-igd:2' },
};
const REQUESTER = { address: '192.168.1.20', via: 'upnp-igd:2' };

interface Received {
  readonly body: string;
  readonly signature: string | undefined;
}

/** A local webhook receiver: answers each POST with the next status of `statuses` (then 200). */
function receiver(statuses: number[] = []): Promise<{ url: string; received: Received[]; server: Server }> {
  const received: Received[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const status = statuses.shift() ?? 200;
      if (status === 200) received.push({ body, signature: req.headers[SIGNATURE_HEADER.toLowerCase()] as string | undefined });
      res.writeHead(status).end();
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received, server })),
  );
}

function pluginWith(options: unknown, logger = new RecordingLogger(), refusals?: RefusalRegistry): Plugin {
  const spec = notifications(options as Parameters<typeof notifications>[0]);
  const child = container.createChildContainer();
  if (refusals) child.register(REFUSALS, { useValue: refusals });
  child.register(PLUGIN_OPTIONS, { useValue: spec.optionsSchema!.parse(spec.options) });
  child.register(LOGGER, { useValue: logger });
  child.register(CLOCK, { useValue: systemClock });
  return spec.create(child);
}

async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!condition() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
}

const servers: Server[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) server.close();
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('notifications: webhook', () => {
  it('POSTs each event as JSON with an HMAC-SHA256 signature of the body', async () => {
    const hook = await receiver();
    servers.push(hook.server);
    const plugin = pluginWith({ webhook: { url: hook.url, secret: 'a-secret-of-16-chars' } });
    void plugin.hooks!.onMapped!({ mapping: MAPPING, previous: undefined, requester: REQUESTER });
    void plugin.hooks!.onUnmapped!({ mapping: MAPPING, reason: 'deleted', requester: REQUESTER });
    await until(() => hook.received.length === 2);
    const [mapped, unmapped] = hook.received.map((r) => JSON.parse(r.body) as Record<string, unknown>);
    expect(mapped).toMatchObject({
      event: 'mapped',
      protocol: 'TCP',
      externalPort: 8080,
      internalClient: '192.168.1.20',
      internalPort: 80,
      leaseSeconds: 0,
      requester: '192.168.1.20',
    });
    expect(unmapped).toMatchObject({ event: 'unmapped', reason: 'deleted' });
    for (const r of hook.received) expect(r.signature).toBe(`sha256=${createHmac('sha256', 'a-secret-of-16-chars').update(r.body).digest('hex')}`);
    await plugin.cleanup?.();
  });

  it('retries with backoff when the receiver fails, and only sends the events it was asked for', async () => {
    const hook = await receiver([500, 503]);
    servers.push(hook.server);
    const plugin = pluginWith({ webhook: { url: hook.url, events: ['expired'] } });
    void plugin.hooks!.onMapped!({ mapping: MAPPING, previous: undefined, requester: REQUESTER });
    void plugin.hooks!.onExpire!({ mapping: MAPPING, reason: 'expired', requester: null });
    await until(() => hook.received.length === 1);
    expect(hook.received.map((r) => (JSON.parse(r.body) as { event: string }).event)).toEqual(['expired']);
    await plugin.cleanup?.();
  });

  it("tells of a policy's refusal, with the client, the policy and the rule", async () => {
    const hook = await receiver();
    servers.push(hook.server);
    const refusals = new RefusalRegistry();
    const plugin = pluginWith({ webhook: { url: hook.url, events: ['refused'] } }, new RecordingLogger(), refusals);
    refusals.announce({
      policy: 'reserved-ports',
      rule: 'below 1024',
      client: '192.168.1.20',
      via: 'upnp-igd:2',
      upnpCode: 718,
      message: 'ConflictInMappingEntry',
    });
    await until(() => hook.received.length === 1);
    expect(JSON.parse(hook.received[0]!.body)).toMatchObject({
      event: 'refused',
      requester: '192.168.1.20',
      via: 'upnp-igd:2',
      reason: 'reserved-ports: below 1024 (718) ConflictInMappingEntry',
    });
    await plugin.cleanup?.();
  });

  it('tells of a repair after a firewall reload and of an external address change', async () => {
    const hook = await receiver();
    servers.push(hook.server);
    const plugin = pluginWith({ webhook: { url: hook.url, events: ['repaired', 'external-address-changed'] } });
    void plugin.hooks!.onRepaired!({ missing: ['table inet upnpd'], rules: 3, tookMs: 12, reason: 'after a kernel event' });
    void plugin.hooks!.onExternalAddressChange!({ previous: '198.51.100.7', current: '198.51.100.8' });
    await until(() => hook.received.length === 2);
    const [repaired, changed] = hook.received.map((r) => JSON.parse(r.body) as Record<string, unknown>);
    expect(repaired).toMatchObject({ event: 'repaired', reason: 'table inet upnpd (3 mapping(s) resynced in 12 ms, after a kernel event)' });
    expect(changed).toMatchObject({ event: 'external-address-changed', previousAddress: '198.51.100.7', currentAddress: '198.51.100.8' });
    await plugin.cleanup?.();
  });

  it('never delays a mapping: the hook returns at once while the receiver hangs', async () => {
    const hanging = createServer(() => undefined);
    servers.push(hanging);
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    const plugin = pluginWith({ webhook: { url: `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/`, timeoutMs: 200, attempts: 1, maxQueue: 2 } });
    const started = performance.now();
    for (let i = 0; i < 50; i++) expect(plugin.hooks!.onMapped!({ mapping: MAPPING, previous: undefined, requester: REQUESTER })).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(200);
    hanging.closeAllConnections();
  });
});

describe('notifications: command', () => {
  it('runs the program without a shell, the event in UPNPD_* variables, within its time limit', async () => {
    const out = join(scratch, 'events.txt');
    const script = join(scratch, 'notify.sh');
    writeFileSync(script, `#!/bin/sh\nenv | grep '^UPNPD_' | sort >> ${out}\necho --- >> ${out}\n`, { mode: 0o755 });
    const plugin = pluginWith({ command: { path: script } });
    void plugin.hooks!.onMapped!({ mapping: MAPPING, previous: undefined, requester: REQUESTER });
    await until(() => existsSync(out) && readFileSync(out, 'utf8').includes('---'));
    const env = readFileSync(out, 'utf8');
    for (const line of [
      'UPNPD_EVENT=mapped',
      'UPNPD_PROTOCOL=TCP',
      'UPNPD_EXTERNAL_PORT=8080',
      'UPNPD_INTERNAL_CLIENT=192.168.1.20',
      'UPNPD_INTERNAL_PORT=80',
      'UPNPD_DESCRIPTION=web',
    ]) {
      expect(env).toContain(line);
    }
    await plugin.cleanup?.();
  });

  it('kills a program past its time limit and says so', async () => {
    const script = join(scratch, 'slow.sh');
    writeFileSync(script, '#!/bin/sh\nsleep 30\n', { mode: 0o755 });
    const logger = new RecordingLogger();
    const plugin = pluginWith({ command: { path: script, timeoutMs: 200 } }, logger);
    void plugin.hooks!.onMapped!({ mapping: MAPPING, previous: undefined, requester: REQUESTER });
    await until(() => logger.messages().some((m) => m.includes('failed for mapped')));
    expect(logger.messages()).toContainEqual(expect.stringMatching(/notification command .*slow\.sh failed for mapped/));
  });

  it('past its time limit, kills what the program started too (a shell script whose curl hangs)', async () => {
    const pidFile = join(scratch, 'child.pid');
    const script = join(scratch, 'starts-a-child.sh');
    writeFileSync(script, `#!/bin/sh\nsleep 30 &\necho $! > ${pidFile}\nwait\n`, { mode: 0o755 });
    const logger = new RecordingLogger();
    const plugin = pluginWith({ command: { path: script, timeoutMs: 300 } }, logger);
    void plugin.hooks!.onMapped!({ mapping: MAPPING, previous: undefined, requester: REQUESTER });
    await until(() => logger.messages().some((m) => m.includes('failed for mapped')));
    const pid = Number(readFileSync(pidFile, 'utf8'));
    // Dead, or a zombie its new parent has not reaped yet.
    const alive = () => existsSync(`/proc/${pid}`) && !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    await until(() => !alive());
    expect(alive()).toBe(false);
    await plugin.cleanup?.();
  });

  it('refuses a relative path and options for neither sink, naming the key', () => {
    expect(() => notifications({ command: { path: 'notify.sh' } }).optionsSchema!.parse({ command: { path: 'notify.sh' } })).toThrow(/absolute path/);
    expect(notifications({}).optionsSchema!.safeParse({}).success).toBe(false);
  });
});

describe('notifications in the daemon', () => {
  it('a mapping made through the lifecycle reaches the webhook', async () => {
    const hook = await receiver();
    servers.push(hook.server);
    const { output } = createRootLogger({ level: 'silent' });
    const daemon = await startDaemon(
      {
        ...configSchema.parse({ lan: ['lo'], externalIp: '203.0.113.1', logLevel: 'silent' }),
        source: 'test',
        lanFromCommandLine: true,
        plugins: [notifications({ webhook: { url: hook.url } }), defineBackend({ name: 'memory', create: () => new RecordingBackend() })()],
      },
      { logger: new RecordingLogger(), logOutput: output, hostReaders: false },
    );
    try {
      await daemon.mappings.add({ ...MAPPING, internalClient: '127.0.0.1' }, { address: '127.0.0.1', via: 'test' });
      await until(() => hook.received.length === 1);
      expect(JSON.parse(hook.received[0]!.body)).toMatchObject({ event: 'mapped', externalPort: 8080, internalClient: '127.0.0.1', via: 'test' });
    } finally {
      await daemon.stop();
    }
  });
});
