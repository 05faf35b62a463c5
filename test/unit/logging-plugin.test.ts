import 'reflect-metadata';
import { createSocket } from 'node:dgram';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { execa } from 'execa';
import { container } from 'tsyringe';
import { describe, expect, it } from 'vitest';
import { LOG_OUTPUT, createRootLogger } from '../../core/logging.js';
import type { MappingRequest, PortMapping, Requester } from '../../core/mapping/types.js';
import { CLOCK, LOGGER, PLUGIN_OPTIONS } from '../../core/plugins/tokens.js';
import { describeMapped, describeUnmapped } from '../../plugins/logging/mapping-log.js';
import { logging } from '../../plugins/logging/index.js';
import { loggingOptionsSchema, syslogTarget, type LoggingOptionsInput } from '../../plugins/logging/options.js';
import { LoggingPlugin } from '../../plugins/logging/plugin.js';
import { ManualClock, makeMappings } from '../support/fakes.js';
import { useTempDir } from '../support/temp-dir.js';

const CLIENT: Requester = { address: '192.168.1.118', via: 'upnp-igd:2' };
const WAN_IP_CONN = 'urn:upnp-org:serviceId:WANIPConn1';

function request(overrides: Partial<MappingRequest> = {}): MappingRequest {
  return {
    remoteHost: '',
    externalPort: 57875,
    protocol: 'UDP',
    internalClient: CLIENT.address,
    internalPort: 57875,
    enabled: true,
    description: 'Skype UDP',
    leaseSeconds: 3600,
    ...overrides,
  };
}

function mapping(overrides: Partial<PortMapping> = {}): PortMapping {
  return { ...request(), expiresAt: 3_601_000, createdBy: CLIENT, ...overrides };
}

/** The logging plugin as the daemon builds it (options parsed by its schema); its stdout is a stream the test reads. */
async function loggingPlugin(clock: ManualClock, options: LoggingOptionsInput = { stdout: 'json' }) {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk) => (text += chunk));
  const { logger, output } = createRootLogger({ level: 'info', stream });
  const scope = container.createChildContainer();
  scope.register(PLUGIN_OPTIONS, { useValue: loggingOptionsSchema.parse(options) });
  scope.register(LOG_OUTPUT, { useValue: output });
  scope.register(LOGGER, { useValue: logger.child({ plugin: 'logging' }) });
  scope.register(CLOCK, { useValue: clock });
  const plugin = scope.resolve(LoggingPlugin);
  await plugin.provision();
  const records = () =>
    text
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { plugin, records, text: () => text, logger };
}

describe('mapping change messages', () => {
  it('an added mapping, in the words the old upnpd used', () => {
    expect(describeMapped({ mapping: mapping(), previous: undefined, requester: CLIENT }, 3600)).toEqual({
      message: 'AddPortMap: Proto:UDP ExtPort:57875 Int:192.168.1.118:57875 RemoteHost:(any) Lease:3600 by 192.168.1.118 via upnp-igd:2',
      fields: {
        event: 'portmap',
        change: 'added',
        protocol: 'UDP',
        externalPort: 57875,
        internalClient: '192.168.1.118',
        internalPort: 57875,
        remoteHost: '',
        description: 'Skype UDP',
        lease: 3600,
        requester: '192.168.1.118',
        via: 'upnp-igd:2',
        service: WAN_IP_CONN,
      },
    });
  });

  it('tells a renewal (same target) from a replacement (another target)', () => {
    const renewed = describeMapped({ mapping: mapping(), previous: mapping({ leaseSeconds: 60 }), requester: CLIENT }, 3600);
    expect(renewed.message).toMatch(/^AddPortMap \(renewed\): Proto:UDP ExtPort:57875 Int:192\.168\.1\.118:57875 /);
    expect(renewed.fields.change).toBe('renewed');

    const replaced = describeMapped({ mapping: mapping(), previous: mapping({ internalPort: 5000 }), requester: CLIENT }, 3600);
    expect(replaced.message).toMatch(/^AddPortMap \(replaced Int:192\.168\.1\.118:5000\): Proto:UDP ExtPort:57875 Int:192\.168\.1\.118:57875 /);
    expect(replaced.fields).toMatchObject({ change: 'replaced', previousInternalClient: '192.168.1.118', previousInternalPort: 5000 });
  });

  it('a permanent lease and a remote host', () => {
    const entry = describeMapped({ mapping: mapping({ expiresAt: null, remoteHost: '203.0.113.9' }), previous: undefined, requester: CLIENT }, 0);
    expect(entry.message).toBe(
      'AddPortMap: Proto:UDP ExtPort:57875 Int:192.168.1.118:57875 RemoteHost:203.0.113.9 Lease:permanent by 192.168.1.118 via upnp-igd:2',
    );
    expect(entry.fields).toMatchObject({ lease: 0, remoteHost: '203.0.113.9' });
  });

  it('removals name who asked, or who had made the mapping when the daemon removed it', () => {
    expect(describeUnmapped({ mapping: mapping(), reason: 'deleted', requester: { address: '192.168.1.5', via: 'upnp-igd:1' } }).message).toBe(
      'DeletePortMap: Proto:UDP ExtPort:57875 Int:192.168.1.118:57875 RemoteHost:(any) by 192.168.1.5 via upnp-igd:1',
    );
    const expired = describeUnmapped({ mapping: mapping(), reason: 'expired', requester: null });
    expect(expired.message).toBe(
      'ExpirePortMap: Proto:UDP ExtPort:57875 Int:192.168.1.118:57875 RemoteHost:(any) lease expired, mapped by 192.168.1.118 via upnp-igd:2',
    );
    expect(expired.fields).toMatchObject({ change: 'expired', requester: null, createdBy: '192.168.1.118', via: 'upnp-igd:2', service: WAN_IP_CONN });
    expect(describeUnmapped({ mapping: mapping({ createdBy: { address: '127.0.0.1', via: 'cli' } }), reason: 'shutdown', requester: null })).toEqual({
      message: 'RemovePortMap: Proto:UDP ExtPort:57875 Int:192.168.1.118:57875 RemoteHost:(any) at shutdown, mapped by 127.0.0.1 via cli',
      fields: expect.objectContaining({ change: 'removed', createdBy: '127.0.0.1', via: 'cli', service: undefined }) as unknown,
    });
  });
});

describe('the logging plugin logs every mapping change', () => {
  it('driven through its hooks: one record per change, with fields and message', async () => {
    const clock = new ManualClock();
    const { plugin, records } = await loggingPlugin(clock);
    const added = mapping({ expiresAt: clock.now() + 7_200_000 });
    await plugin.hooks.onMapped!({ mapping: added, previous: undefined, requester: CLIENT });
    const expiredEvent = { mapping: added, reason: 'expired' as const, requester: null };
    // The mapping service notifies an expiry to both hooks: it must be logged once.
    await plugin.hooks.onExpire!(expiredEvent);
    await plugin.hooks.onUnmapped!(expiredEvent);
    await plugin.hooks.onUnmapped!({ mapping: added, reason: 'deleted', requester: CLIENT });

    expect(records().map((r) => [r.level, r.msg])).toEqual([
      [30, 'AddPortMap: Proto:UDP ExtPort:57875 Int:192.168.1.118:57875 RemoteHost:(any) Lease:7200 by 192.168.1.118 via upnp-igd:2'],
      [30, 'ExpirePortMap: Proto:UDP ExtPort:57875 Int:192.168.1.118:57875 RemoteHost:(any) lease expired, mapped by 192.168.1.118 via upnp-igd:2'],
      [30, 'DeletePortMap: Proto:UDP ExtPort:57875 Int:192.168.1.118:57875 RemoteHost:(any) by 192.168.1.118 via upnp-igd:2'],
    ]);
    expect(records()[0]).toMatchObject({
      plugin: 'logging',
      change: 'added',
      protocol: 'UDP',
      externalPort: 57875,
      lease: 7200,
      requester: CLIENT.address,
      service: WAN_IP_CONN,
    });
    await plugin.cleanup();
  });

  it('through the mapping service: the lease granted, renewals, expiry', async () => {
    const clock = new ManualClock();
    const { plugin, records } = await loggingPlugin(clock);
    const { mappings } = makeMappings({ plugins: [plugin], clock, lease: { defaultSeconds: 3600, maxSeconds: 86400, allowPermanent: true } });

    await mappings.add(request({ leaseSeconds: 604800 }), CLIENT);
    await mappings.add(request({ leaseSeconds: 600 }), CLIENT);
    await clock.advance(601_000);

    expect(records().map((r) => [r.change, r.lease, r.msg])).toEqual([
      ['added', 86400, 'AddPortMap: Proto:UDP ExtPort:57875 Int:192.168.1.118:57875 RemoteHost:(any) Lease:86400 by 192.168.1.118 via upnp-igd:2'],
      ['renewed', 600, 'AddPortMap (renewed): Proto:UDP ExtPort:57875 Int:192.168.1.118:57875 RemoteHost:(any) Lease:600 by 192.168.1.118 via upnp-igd:2'],
      [
        'expired',
        undefined,
        'ExpirePortMap: Proto:UDP ExtPort:57875 Int:192.168.1.118:57875 RemoteHost:(any) lease expired, mapped by 192.168.1.118 via upnp-igd:2',
      ],
    ]);
    await mappings.close();
    await plugin.cleanup();
  });
});

/** Polls until `condition` holds; fails after `timeoutMs`. */
async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function udpReceiver() {
  const socket = createSocket('udp4');
  const messages: string[] = [];
  socket.on('message', (datagram) => messages.push(datagram.toString('utf8')));
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { port: socket.address().port, messages, close: () => new Promise<void>((resolve) => socket.close(resolve)) };
}

/** Binds an AF_UNIX SOCK_DGRAM socket (Node cannot) and prints each datagram as a JSON string; gives up after 30 s. */
const UNIX_RECEIVER = `
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("ready", flush=True)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    s.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        data = s.recv(65536)
    except socket.timeout:
        break
    print(json.dumps(data.decode("utf-8", "replace")), flush=True)
`;

async function unixDatagramReceiver(path: string) {
  const child = execa('python3', ['-c', UNIX_RECEIVER, path], { stdin: 'ignore', stderr: 'inherit', buffer: false, reject: false, timeout: 40_000 });
  const messages: string[] = [];
  let ready = false;
  let pending = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    pending += chunk;
    for (let end = pending.indexOf('\n'); end >= 0; end = pending.indexOf('\n')) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 1);
      if (line === 'ready') ready = true;
      else messages.push(JSON.parse(line) as string);
    }
  });
  await waitFor(() => ready || child.exitCode !== null);
  if (!ready) throw new Error('the unix datagram receiver did not start');
  return {
    messages,
    async stop() {
      child.kill();
      await child;
    },
  };
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const ADD_PORT_MAP = escapeRegExp('AddPortMap: Proto:UDP ExtPort:57875 Int:192.168.1.118:57875 RemoteHost:(any) Lease:3600 by 192.168.1.118 via upnp-igd:2');
const RFC5424_TIME = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d+(Z|[+-]\\d\\d:\\d\\d)';
const RFC3164_TIME = '[A-Z][a-z]{2} [ \\d]\\d \\d\\d:\\d\\d:\\d\\d';
const HOST = escapeRegExp(hostname());
const SHORT_HOST = escapeRegExp(hostname().split('.')[0]!);

describe('syslog, end to end', () => {
  const tmp = useTempDir('upnpd-logging-');

  async function logThrough(options: LoggingOptionsInput) {
    const clock = new ManualClock();
    const { plugin, logger, records } = await loggingPlugin(clock, options);
    try {
      logger.warn('syslog test');
      logger.error({ err: new Error('boom') }, 'it failed');
      await plugin.hooks.onMapped!({ mapping: mapping({ expiresAt: clock.now() + 3_600_000 }), previous: undefined, requester: CLIENT });
    } finally {
      await plugin.cleanup();
    }
    return records();
  }

  it('over UDP to 127.0.0.1: RFC 5424 by default, one datagram per record, nothing on stdout', async () => {
    const receiver = await udpReceiver();
    try {
      const stdout = await logThrough({ stdout: false, syslog: { host: '127.0.0.1', port: receiver.port, facility: 'local3' } });
      await waitFor(() => receiver.messages.length === 3);
      const header = `1 ${RFC5424_TIME} ${HOST} upnpd ${process.pid} - - `;
      expect(receiver.messages[0]).toMatch(new RegExp(`^<156>${header}syslog test$`));
      expect(receiver.messages[1]).toMatch(new RegExp(`^<155>${header}it failed: boom$`));
      expect(receiver.messages[2]).toMatch(new RegExp(`^<158>${header}${ADD_PORT_MAP}$`));
      expect(stdout).toEqual([]);
    } finally {
      await receiver.close();
    }
  });

  it('over UDP in RFC 3164, with its own tag', async () => {
    const receiver = await udpReceiver();
    try {
      await logThrough({ stdout: false, syslog: { host: '127.0.0.1', port: receiver.port, protocol: 'udp', format: 'rfc3164', tag: 'igd' } });
      await waitFor(() => receiver.messages.length === 3);
      expect(receiver.messages[0]).toMatch(new RegExp(`^<28>${RFC3164_TIME} ${SHORT_HOST} igd\\[${process.pid}\\]: syslog test$`));
      expect(receiver.messages[2]).toMatch(new RegExp(`^<30>${RFC3164_TIME} ${SHORT_HOST} igd\\[${process.pid}\\]: ${ADD_PORT_MAP}$`));
    } finally {
      await receiver.close();
    }
  });

  it('to a unix datagram socket: what syslog(3) sends locally, while stdout keeps its JSON', async () => {
    const path = join(tmp.path, 'log.sock');
    const receiver = await unixDatagramReceiver(path);
    try {
      const stdout = await logThrough({ stdout: 'json', syslog: { path } });
      await waitFor(() => receiver.messages.length === 3);
      const header = `${RFC3164_TIME} upnpd\\[${process.pid}\\]: `;
      expect(receiver.messages[0]).toMatch(new RegExp(`^<28>${header}syslog test$`));
      expect(receiver.messages[1]).toMatch(new RegExp(`^<27>${header}it failed: boom$`));
      expect(receiver.messages[2]).toMatch(new RegExp(`^<30>${header}${ADD_PORT_MAP}$`));
      expect(stdout.map((r) => r.msg)).toEqual(['syslog test', 'it failed', expect.stringMatching(/^AddPortMap: /)]);
    } finally {
      await receiver.stop();
    }
  });

  it('to a unix datagram socket in RFC 5424', async () => {
    const path = join(tmp.path, 'log.sock');
    const receiver = await unixDatagramReceiver(path);
    try {
      await logThrough({ stdout: false, syslog: { path, format: 'rfc5424', facility: 'user' } });
      await waitFor(() => receiver.messages.length === 3);
      expect(receiver.messages[0]).toMatch(new RegExp(`^<12>1 ${RFC5424_TIME} ${HOST} upnpd ${process.pid} - - syslog test$`));
    } finally {
      await receiver.stop();
    }
  });

  it('an unreachable syslog neither throws nor blocks, and stdout still gets everything', async () => {
    const closed = createSocket('udp4');
    await new Promise<void>((resolve) => closed.bind(0, '127.0.0.1', resolve));
    const closedPort = closed.address().port;
    await new Promise<void>((resolve) => closed.close(resolve));

    for (const syslog of [{ path: join(tmp.path, 'nobody-listens.sock') }, { host: '127.0.0.1', port: closedPort }]) {
      const { plugin, logger, records } = await loggingPlugin(new ManualClock(), { stdout: 'json', syslog });
      const started = Date.now();
      expect(() => {
        for (let i = 0; i < 200; i++) logger.info(`record ${i}`);
      }).not.toThrow();
      await plugin.cleanup();
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(records().filter((r) => typeof r.msg === 'string' && r.msg.startsWith('record '))).toHaveLength(200);
    }
  });
});

describe('stdout formats', () => {
  it("'journald' writes <N>-prefixed lines", async () => {
    const { plugin, logger, text } = await loggingPlugin(new ManualClock(), { stdout: 'journald' });
    logger.info('hello');
    logger.error('bad');
    await plugin.cleanup();
    expect(text()).toBe('<6>hello\n<3>bad\n');
  });

  it('after cleanup the configured stdout format stays, or the default comes back when stdout was off', async () => {
    const journald = await loggingPlugin(new ManualClock(), { stdout: 'journald' });
    await journald.plugin.cleanup();
    journald.logger.info('last words');
    expect(journald.text()).toBe('<6>last words\n');

    const off = await loggingPlugin(new ManualClock(), { stdout: false, syslog: { path: '/nonexistent/upnpd-test.sock' } });
    await off.plugin.cleanup();
    off.logger.info('last words');
    expect(off.records().map((r) => r.msg)).toEqual(['last words']);
  });
});

describe('logging options', () => {
  it('defaults: stdout chosen automatically, no syslog', () => {
    expect(loggingOptionsSchema.parse({})).toEqual({ stdout: 'auto' });
    expect(loggingOptionsSchema.parse({ syslog: false })).toEqual({ stdout: 'auto' });
  });

  it('a local socket defaults to /dev/log in RFC 3164; a host to UDP port 514 in RFC 5424', () => {
    const local = loggingOptionsSchema.parse({ syslog: {} }).syslog;
    const remote = loggingOptionsSchema.parse({ syslog: { host: 'loghost.lan' } }).syslog;
    expect(local && syslogTarget(local)).toEqual({ transport: 'unix', path: '/dev/log', format: 'rfc3164', facility: 'daemon', tag: 'upnpd' });
    expect(remote && syslogTarget(remote)).toEqual({ transport: 'udp', host: 'loghost.lan', port: 514, format: 'rfc5424', facility: 'daemon', tag: 'upnpd' });
  });

  it('parsing twice changes nothing', () => {
    for (const input of [{}, { stdout: 'pretty' as const, syslog: { host: '::1', port: 5514, format: 'rfc3164' as const, facility: 'local5' as const } }]) {
      const once = loggingOptionsSchema.parse(input);
      expect(loggingOptionsSchema.parse(once)).toEqual(once);
    }
  });

  it.each([
    [{ syslog: { path: '/dev/log', host: '10.0.0.2' } }, ['syslog', 'host'], 'either path'],
    [{ syslog: { port: 514 } }, ['syslog', 'port'], 'needs host'],
    [{ syslog: { path: '/dev/log', protocol: 'udp' } }, ['syslog', 'protocol'], 'needs host'],
    [{ syslog: { host: 'bad host!' } }, ['syslog', 'host'], 'host name'],
    [{ syslog: { facility: 'kern' } }, ['syslog', 'facility'], 'local7'],
    [{ syslog: true }, ['syslog'], 'object'],
    [{ syslog: { tag: 'two words' } }, ['syslog', 'tag'], 'letters'],
    [{ syslog: { host: '10.0.0.2', port: 70000 } }, ['syslog', 'port'], ''],
    [{ stdout: 'xml' }, ['stdout'], 'must be "json", "pretty", "journald", "auto" or false'],
    [{ stdout: false, syslog: false }, [], 'nothing would be logged'],
    [{ verbose: true }, [], ''],
  ])('rejects %o at %o', (input, path, message) => {
    const result = loggingOptionsSchema.safeParse(input);
    expect(result.success).toBe(false);
    const issue = result.error!.issues.find((i) => i.path.join('.') === path.join('.'));
    expect(issue, JSON.stringify(result.error!.issues)).toBeDefined();
    expect(issue!.message).toContain(message);
  });

  it('logging() builds the plugin from the options its schema parsed, as the host does', () => {
    const spec = logging();
    const scope = container.createChildContainer();
    scope.register(PLUGIN_OPTIONS, { useValue: loggingOptionsSchema.parse(spec.options) });
    const { logger, output } = createRootLogger({ level: 'info', stream: new PassThrough() });
    scope.register(LOG_OUTPUT, { useValue: output });
    scope.register(LOGGER, { useValue: logger });
    scope.register(CLOCK, { useValue: new ManualClock() });
    const plugin = spec.create(scope);
    expect(plugin).toBeInstanceOf(LoggingPlugin);
    expect(plugin).toMatchObject({ name: 'logging', order: 'pre' });
  });
});
