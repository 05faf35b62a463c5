import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.js';
import { EventService, type EventServiceOptions, type EventedService } from '../../core/upnp/gena/event-service.js';
import { ManualClock } from '../support/fakes.js';
import { propertySetVariables } from '../support/upnp-xml.js';

// Everything here runs on loopback: 127.0.0.1 and 127.0.0.2 act as two LAN clients.
const CLIENT_A = '127.0.0.1';
const CLIENT_B = '127.0.0.2';
const SID_PATTERN = /^uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Notification {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  readonly seq: number;
  readonly variables: Record<string, string>;
}

/** How a receiver answers its n-th NOTIFY: an HTTP status, after an optional delay; 'hang' never answers. */
type Answer = number | 'hang' | { status: number; delayMs: number };

/** A control point's event listener. */
class Receiver {
  readonly received: Notification[] = [];
  answer: (index: number) => Answer = () => 200;
  inFlight = 0;
  maxInFlight = 0;
  private readonly server: Server;

  private constructor(readonly host: string) {
    this.server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        const index = this.received.length;
        this.received.push({
          method: req.method ?? '',
          path: req.url ?? '',
          headers: req.headers,
          body,
          seq: Number(req.headers.seq),
          variables: propertySetVariables(body),
        });
        timeline.push(`notify ${String(req.headers.seq)}`);
        this.inFlight++;
        this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
        const answer = this.answer(index);
        if (answer === 'hang') return;
        const { status, delayMs } = typeof answer === 'number' ? { status: answer, delayMs: 0 } : answer;
        setTimeout(() => {
          this.inFlight--;
          res.writeHead(status, { 'content-length': 0 }).end();
        }, delayMs);
      });
    });
  }

  static async start(host: string): Promise<Receiver> {
    const receiver = new Receiver(host);
    await new Promise<void>((resolve) => receiver.server.listen(0, host, resolve));
    cleanups.push(() => receiver.close());
    return receiver;
  }

  url(path = '/event'): string {
    return `http://${this.host}:${(this.server.address() as AddressInfo).port}${path}`;
  }

  private async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

const WAN_IP: EventedService = {
  eventPath: '/evt/WANIPConn1',
  serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:2',
  variables: () => ({ ConnectionStatus: 'Connected', ExternalIPAddress: '203.0.113.7', PortMappingNumberOfEntries: '0' }),
};
const COMMON: EventedService = {
  eventPath: '/evt/WANCommonIFC1',
  serviceType: 'urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1',
  variables: () => ({ PhysicalLinkStatus: 'Up' }),
};

/** What happened, in order, across the subscribing client and the receivers. */
let timeline: string[] = [];
let cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
  timeline = [];
});

/** An HTTP server routing every request to the event service; `holdMs` delays each response's end. */
async function startPublisher(options: Partial<EventServiceOptions> & { holdMs?: number; services?: EventedService[] } = {}) {
  const clock = new ManualClock();
  const events = new EventService({ logger: silentLogger, maxSubscriptionsPerClient: 8, clock, ...options });
  const services = options.services ?? [WAN_IP, COMMON];
  const server = createServer((req, res) => {
    const service = services.find((s) => s.eventPath === req.url);
    if (!service) return void res.writeHead(404, { 'content-length': 0 }).end();
    if (options.holdMs) {
      const end = res.end.bind(res) as () => void;
      res.end = (() => {
        setTimeout(end, options.holdMs);
        return res;
      }) as typeof res.end;
    }
    events.handle(req, res, service, req.socket.remoteAddress!);
  });
  await new Promise<void>((resolve) => server.listen(0, CLIENT_A, resolve));
  cleanups.push(async () => {
    await events.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  const port = (server.address() as AddressInfo).port;

  /** Sends a GENA request from `from`; resolves with the status and headers. */
  const send = (method: string, headers: Record<string, string>, from = CLIENT_A, path = WAN_IP.eventPath) =>
    new Promise<{ status: number; headers: IncomingHttpHeaders }>((resolve, reject) => {
      const req = request({ host: CLIENT_A, port, path, method, headers, localAddress: from, agent: false }, (res) => {
        timeline.push(`response ${res.statusCode}`);
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
      });
      req.on('error', reject);
      req.end();
    });

  const subscribe = async (callback: string, from = CLIENT_A, path = WAN_IP.eventPath) => {
    const res = await send('SUBSCRIBE', { callback: `<${callback}>`, nt: 'upnp:event', timeout: 'Second-1800' }, from, path);
    return { ...res, sid: res.headers.sid as string };
  };
  return { events, clock, port, send, subscribe };
}

/** Polls until `condition` holds; fails after `timeoutMs`. */
async function waitFor(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A loopback port nothing listens on: connections to it are refused. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, CLIENT_A, resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('SUBSCRIBE', () => {
  it('answers 200 with SID, TIMEOUT ≥ 1800, DATE, SERVER and no body', async () => {
    const { subscribe } = await startPublisher({ serverString: 'Linux/6 UPnP/1.1 upnpd/0.1.0' });
    const receiver = await Receiver.start(CLIENT_A);
    const res = await subscribe(receiver.url());
    expect(res.status).toBe(200);
    expect(res.sid).toMatch(SID_PATTERN);
    expect(res.headers.timeout).toBe('Second-1800');
    expect(res.headers['content-length']).toBe('0');
    expect(res.headers.server).toBe('Linux/6 UPnP/1.1 upnpd/0.1.0');
    expect(Number.isNaN(Date.parse(res.headers.date ?? ''))).toBe(false);
  });

  it.each([
    ['Second-60', 'Second-1800'],
    ['Second-infinite', 'Second-3600'],
    ['Second-2700', 'Second-2700'],
  ])('grants a bounded duration for TIMEOUT %s', async (asked, granted) => {
    const { send } = await startPublisher();
    const receiver = await Receiver.start(CLIENT_A);
    const res = await send('SUBSCRIBE', { callback: `<${receiver.url()}>`, nt: 'upnp:event', timeout: asked });
    expect(res.headers.timeout).toBe(granted);
  });

  it('sends the initial event (SEQ 0, every evented variable) only after the response reached the subscriber', async () => {
    const { subscribe } = await startPublisher({ holdMs: 150 });
    const receiver = await Receiver.start(CLIENT_A);
    const { sid } = await subscribe(receiver.url('/cb/1'));
    await waitFor(() => receiver.received.length === 1);
    expect(timeline).toEqual(['response 200', 'notify 0']);
    const [initial] = receiver.received;
    expect(initial!.method).toBe('NOTIFY');
    expect(initial!.path).toBe('/cb/1');
    expect(initial!.seq).toBe(0);
    expect(initial!.variables).toEqual(WAN_IP.variables());
    expect(initial!.headers).toMatchObject({
      host: new URL(receiver.url()).host,
      'content-type': 'text/xml; charset="utf-8"',
      nt: 'upnp:event',
      nts: 'upnp:propchange',
      sid,
      'content-length': String(Buffer.byteLength(initial!.body)),
    });
  });

  it('forgets a subscriber that went away before the response was sent: no event, slot freed', async () => {
    const { port, subscribe } = await startPublisher({ holdMs: 150, maxSubscriptionsPerClient: 1 });
    const receiver = await Receiver.start(CLIENT_A);
    const req = request({
      host: CLIENT_A,
      port,
      path: WAN_IP.eventPath,
      method: 'SUBSCRIBE',
      agent: false,
      headers: { callback: `<${receiver.url()}>`, nt: 'upnp:event' },
    });
    req.on('error', () => {});
    req.end();
    await sleep(30);
    req.destroy();
    await sleep(300);
    expect(receiver.received).toEqual([]);
    expect((await subscribe(receiver.url())).status).toBe(200);
  });

  it('refuses a delivery URL that is not the subscriber’s own address (CallStranger)', async () => {
    const { subscribe, events } = await startPublisher();
    const thirdParty = await Receiver.start(CLIENT_B);
    expect((await subscribe(thirdParty.url(), CLIENT_A)).status).toBe(412);
    events.publish(WAN_IP, { ExternalIPAddress: '198.51.100.1' });
    await sleep(100);
    expect(thirdParty.received).toEqual([]);
  });

  it('tries the delivery URLs in order until one accepts', async () => {
    const { send, events } = await startPublisher({ maxDeliveryFailures: 1 });
    const dead = await Receiver.start(CLIENT_A);
    dead.answer = () => 503;
    const alive = await Receiver.start(CLIENT_A);
    const res = await send('SUBSCRIBE', { callback: `<${dead.url()}><${alive.url()}>`, nt: 'upnp:event' });
    await waitFor(() => alive.received.length === 1);
    events.publish(WAN_IP, { PortMappingNumberOfEntries: '1' });
    await waitFor(() => alive.received.length === 2);
    expect(dead.received.map((n) => n.seq)).toEqual([0, 1]);
    expect(alive.received.map((n) => [n.headers.sid, n.seq])).toEqual([
      [res.headers.sid, 0],
      [res.headers.sid, 1],
    ]);
  });
});

describe('publish', () => {
  it('sends the changed variables with the next SEQ', async () => {
    const { subscribe, events } = await startPublisher();
    const receiver = await Receiver.start(CLIENT_A);
    const { sid } = await subscribe(receiver.url());
    await waitFor(() => receiver.received.length === 1);
    events.publish(WAN_IP, { PortMappingNumberOfEntries: '1' });
    await waitFor(() => receiver.received.length === 2);
    expect(receiver.received[1]).toMatchObject({ seq: 1, variables: { PortMappingNumberOfEntries: '1' }, headers: { sid } });
  });

  it('reaches only the subscribers of that service', async () => {
    const { subscribe, events } = await startPublisher();
    const wan = await Receiver.start(CLIENT_A);
    const common = await Receiver.start(CLIENT_A);
    await subscribe(wan.url(), CLIENT_A, WAN_IP.eventPath);
    await subscribe(common.url(), CLIENT_A, COMMON.eventPath);
    await waitFor(() => wan.received.length === 1 && common.received.length === 1);
    expect(common.received[0]!.variables).toEqual({ PhysicalLinkStatus: 'Up' });
    events.publish(COMMON, { PhysicalLinkStatus: 'Down' });
    await waitFor(() => common.received.length === 2);
    await sleep(50);
    expect(wan.received).toHaveLength(1);
  });

  it('XML-escapes values', async () => {
    const { subscribe, events } = await startPublisher();
    const receiver = await Receiver.start(CLIENT_A);
    await subscribe(receiver.url());
    const value = `<x a="1">&'</x>`;
    events.publish(WAN_IP, { ConnectionStatus: value });
    await waitFor(() => receiver.received.length === 2);
    expect(receiver.received[1]!.body).toContain('<ConnectionStatus>&lt;x a=&quot;1&quot;&gt;&amp;&apos;&lt;/x&gt;</ConnectionStatus>');
    expect(receiver.received[1]!.variables).toEqual({ ConnectionStatus: value });
  });

  it('delivers one event at a time per subscription, in SEQ order', async () => {
    const { subscribe, events } = await startPublisher();
    const receiver = await Receiver.start(CLIENT_A);
    receiver.answer = () => ({ status: 200, delayMs: 20 });
    await subscribe(receiver.url());
    for (let n = 1; n <= 5; n++) events.publish(WAN_IP, { PortMappingNumberOfEntries: String(n) });
    await waitFor(() => receiver.received.length === 6);
    expect(receiver.received.map((n) => n.seq)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(receiver.received.map((n) => n.variables.PortMappingNumberOfEntries)).toEqual(['0', '1', '2', '3', '4', '5']);
    expect(receiver.maxInFlight).toBe(1);
  });

  it('bounds the queue of a slow subscriber by merging waiting events; the latest values win', async () => {
    const { subscribe, events } = await startPublisher({ maxQueuedEvents: 2 });
    const receiver = await Receiver.start(CLIENT_A);
    receiver.answer = () => ({ status: 200, delayMs: 50 });
    await subscribe(receiver.url());
    await waitFor(() => receiver.received.length === 1);
    for (let n = 1; n <= 10; n++) events.publish(WAN_IP, { PortMappingNumberOfEntries: String(n), ...(n === 3 ? { ConnectionStatus: 'Disconnected' } : {}) });
    await waitFor(() => receiver.received.at(-1)?.variables.PortMappingNumberOfEntries === '10');
    await sleep(100);
    expect(receiver.received.map((n) => n.seq)).toEqual([0, 1, 2]);
    expect(receiver.received[1]!.variables).toEqual({ PortMappingNumberOfEntries: '1' });
    expect(receiver.received[2]!.variables).toEqual({ PortMappingNumberOfEntries: '10', ConnectionStatus: 'Disconnected' });
  });

  it('refuses a variable name that would break the document', async () => {
    const { events } = await startPublisher();
    expect(() => events.publish(WAN_IP, { '</e:property>': 'x' })).toThrow(TypeError);
  });
});

describe('renewal and expiry', () => {
  it('renews with SID and TIMEOUT; the subscription lives past its first term', async () => {
    const { subscribe, send, clock, events } = await startPublisher();
    const receiver = await Receiver.start(CLIENT_A);
    const { sid } = await subscribe(receiver.url());
    await clock.advance(1700_000);
    const renewed = await send('SUBSCRIBE', { sid, timeout: 'Second-1800' });
    expect(renewed.status).toBe(200);
    expect(renewed.headers).toMatchObject({ sid, timeout: 'Second-1800', 'content-length': '0' });
    await clock.advance(1700_000);
    events.publish(WAN_IP, { ExternalIPAddress: '198.51.100.1' });
    await waitFor(() => receiver.received.length === 2);
    expect(receiver.received[1]!.seq).toBe(1);
  });

  it('removes an expired subscription: no more events, renewal answers 412', async () => {
    const { subscribe, send, clock, events } = await startPublisher();
    const receiver = await Receiver.start(CLIENT_A);
    const { sid } = await subscribe(receiver.url());
    await waitFor(() => receiver.received.length === 1);
    await clock.advance(1800_000);
    events.publish(WAN_IP, { ExternalIPAddress: '198.51.100.1' });
    expect((await send('SUBSCRIBE', { sid })).status).toBe(412);
    await sleep(50);
    expect(receiver.received).toHaveLength(1);
  });

  it('refuses to renew a SID from another address or on another service', async () => {
    const { subscribe, send } = await startPublisher();
    const receiver = await Receiver.start(CLIENT_A);
    const { sid } = await subscribe(receiver.url());
    expect((await send('SUBSCRIBE', { sid }, CLIENT_B)).status).toBe(412);
    expect((await send('SUBSCRIBE', { sid }, CLIENT_A, COMMON.eventPath)).status).toBe(412);
    expect((await send('UNSUBSCRIBE', { sid }, CLIENT_B)).status).toBe(412);
    expect((await send('SUBSCRIBE', { sid })).status).toBe(200);
  });
});

describe('UNSUBSCRIBE', () => {
  it('ends the subscription: 200, then no more events, then 412 for the same SID', async () => {
    const { subscribe, send, events } = await startPublisher();
    const leaving = await Receiver.start(CLIENT_A);
    const staying = await Receiver.start(CLIENT_A);
    const { sid } = await subscribe(leaving.url());
    await subscribe(staying.url());
    await waitFor(() => leaving.received.length === 1 && staying.received.length === 1);
    const res = await send('UNSUBSCRIBE', { sid });
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe('0');
    events.publish(WAN_IP, { ExternalIPAddress: '198.51.100.1' });
    await waitFor(() => staying.received.length === 2);
    await sleep(50);
    expect(leaving.received).toHaveLength(1);
    expect((await send('UNSUBSCRIBE', { sid })).status).toBe(412);
  });
});

describe('refusals on the wire', () => {
  const SOME_SID = 'uuid:0b7a4b2e-3c1d-4e5f-8a9b-0c1d2e3f4a5b';
  it.each<[string, string, Record<string, string>, number]>([
    ['SID with NT', 'SUBSCRIBE', { sid: SOME_SID, nt: 'upnp:event' }, 400],
    ['SID with CALLBACK', 'SUBSCRIBE', { sid: SOME_SID, callback: '<http://127.0.0.1:9/>' }, 400],
    ['NT missing', 'SUBSCRIBE', { callback: '<http://127.0.0.1:9/>' }, 412],
    ['bad NT', 'SUBSCRIBE', { callback: '<http://127.0.0.1:9/>', nt: 'ssdp:all' }, 412],
    ['CALLBACK missing', 'SUBSCRIBE', { nt: 'upnp:event' }, 412],
    ['CALLBACK to a name', 'SUBSCRIBE', { callback: '<http://localhost:9/>', nt: 'upnp:event' }, 412],
    ['renewal of an unknown SID', 'SUBSCRIBE', { sid: SOME_SID }, 412],
    ['UNSUBSCRIBE of an unknown SID', 'UNSUBSCRIBE', { sid: SOME_SID }, 412],
    ['UNSUBSCRIBE without SID', 'UNSUBSCRIBE', {}, 412],
  ])('%s → %d', async (_name, method, headers, status) => {
    const { send } = await startPublisher();
    const res = await send(method, headers);
    expect(res.status).toBe(status);
    expect(res.headers['content-length']).toBe('0');
  });

  it('answers 405 with Allow for other methods', async () => {
    const { send } = await startPublisher();
    const res = await send('POST', {});
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('SUBSCRIBE, UNSUBSCRIBE');
  });

  it('answers 500 when the service cannot give its variables, and keeps working', async () => {
    const broken: EventedService = {
      ...COMMON,
      variables: () => {
        throw new Error('no link');
      },
    };
    const { send } = await startPublisher({ services: [broken, WAN_IP] });
    const receiver = await Receiver.start(CLIENT_A);
    expect((await send('SUBSCRIBE', { callback: `<${receiver.url()}>`, nt: 'upnp:event' }, CLIENT_A, broken.eventPath)).status).toBe(500);
    expect((await send('SUBSCRIBE', { callback: `<${receiver.url()}>`, nt: 'upnp:event' })).status).toBe(200);
  });
});

describe('limits', () => {
  it('refuses subscriptions over the per-client cap with 503; other clients still subscribe', async () => {
    const { subscribe, send } = await startPublisher({ maxSubscriptionsPerClient: 2 });
    const a = await Receiver.start(CLIENT_A);
    const b = await Receiver.start(CLIENT_B);
    const first = await subscribe(a.url());
    expect((await subscribe(a.url())).status).toBe(200);
    expect((await subscribe(a.url())).status).toBe(503);
    expect((await subscribe(b.url(), CLIENT_B)).status).toBe(200);
    // A freed slot can be used again.
    expect((await send('UNSUBSCRIBE', { sid: first.sid })).status).toBe(200);
    expect((await subscribe(a.url())).status).toBe(200);
  });

  it('refuses subscriptions over the total cap with 503', async () => {
    const { subscribe } = await startPublisher({ maxSubscriptionsPerClient: 5, maxSubscriptions: 2 });
    const a = await Receiver.start(CLIENT_A);
    const b = await Receiver.start(CLIENT_B);
    expect((await subscribe(a.url())).status).toBe(200);
    expect((await subscribe(b.url(), CLIENT_B)).status).toBe(200);
    expect((await subscribe(a.url())).status).toBe(503);
    expect((await subscribe(b.url(), CLIENT_B)).status).toBe(503);
  });

  it('a full table held by one client gives way to another: the oldest subscriptions of the biggest holder are dropped', async () => {
    // As one host subscribing from 32 addresses (8 each) fills the default 256.
    const { subscribe, send } = await startPublisher({ maxSubscriptionsPerClient: 4, maxSubscriptions: 4 });
    const a = await Receiver.start(CLIENT_A);
    const b = await Receiver.start(CLIENT_B);
    const held = [];
    for (let i = 0; i < 4; i++) held.push((await subscribe(a.url())).sid);
    expect((await subscribe(b.url(), CLIENT_B)).status).toBe(200);
    expect((await subscribe(b.url(), CLIENT_B)).status).toBe(200);
    // Two each now: neither takes from the other.
    expect((await subscribe(b.url(), CLIENT_B)).status).toBe(503);
    expect((await subscribe(a.url())).status).toBe(503);
    const renewals = [];
    for (const sid of held) renewals.push((await send('SUBSCRIBE', { sid, timeout: 'Second-1800' })).status);
    expect(renewals).toEqual([412, 412, 200, 200]);
  });
});

describe('unreachable subscribers', () => {
  /** Subscribes, publishes two changes, and waits until the service gave the subscriber up (renewal → 412). */
  async function subscribeUntilDropped(publisher: Awaited<ReturnType<typeof startPublisher>>, callback: string): Promise<void> {
    const { sid } = await publisher.subscribe(callback);
    for (let n = 1; n <= 2; n++) publisher.events.publish(WAN_IP, { PortMappingNumberOfEntries: String(n) });
    const deadline = Date.now() + 3000;
    while ((await publisher.send('SUBSCRIBE', { sid })).status === 200) {
      if (Date.now() > deadline) throw new Error('subscriber never dropped');
      await sleep(20);
    }
  }

  it('drops a subscriber whose connections are refused after 3 failed events', async () => {
    const publisher = await startPublisher();
    await subscribeUntilDropped(publisher, `http://${CLIENT_A}:${await closedPort()}/event`);
  });

  it('drops a subscriber that answers with errors', async () => {
    const publisher = await startPublisher();
    const failing = await Receiver.start(CLIENT_A);
    failing.answer = () => 500;
    await subscribeUntilDropped(publisher, failing.url());
    expect(failing.received.map((n) => n.seq)).toEqual([0, 1, 2]);
    publisher.events.publish(WAN_IP, { PortMappingNumberOfEntries: '9' });
    await sleep(50);
    expect(failing.received).toHaveLength(3);
  });

  it('drops a subscriber that never answers, each NOTIFY bounded by the timeout', async () => {
    const publisher = await startPublisher({ notifyTimeoutMs: 100 });
    const silent = await Receiver.start(CLIENT_A);
    silent.answer = () => 'hang';
    const started = Date.now();
    await subscribeUntilDropped(publisher, silent.url());
    expect(silent.received.map((n) => n.seq)).toEqual([0, 1, 2]);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('keeps a subscriber whose failures are not consecutive', async () => {
    const { subscribe, send, events } = await startPublisher();
    const flaky = await Receiver.start(CLIENT_A);
    flaky.answer = (index) => (index % 3 === 2 ? 200 : 500);
    const { sid } = await subscribe(flaky.url());
    for (let n = 1; n <= 5; n++) events.publish(WAN_IP, { PortMappingNumberOfEntries: String(n) });
    await waitFor(() => flaky.received.length === 6);
    await sleep(20);
    expect((await send('SUBSCRIBE', { sid })).status).toBe(200);
  });
});

describe('close', () => {
  it('aborts deliveries in flight, then refuses subscriptions', async () => {
    const { subscribe, events } = await startPublisher({ notifyTimeoutMs: 10_000 });
    const silent = await Receiver.start(CLIENT_A);
    silent.answer = () => 'hang';
    await subscribe(silent.url());
    await waitFor(() => silent.received.length === 1);
    const started = Date.now();
    await events.close();
    expect(Date.now() - started).toBeLessThan(1000);
    events.publish(WAN_IP, { ExternalIPAddress: '198.51.100.1' });
    const receiver = await Receiver.start(CLIENT_A);
    expect((await subscribe(receiver.url())).status).toBe(503);
  });
});
