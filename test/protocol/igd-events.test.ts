import { createServer, type Server } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseScpd, propertySetVariables } from '../support/upnp-xml.js';
import { WANCOMMON, addArgs, rawRequest, soap, startIgd, type IgdFixture } from './fixture.js';

/**
 * GENA through the front-end: SUBSCRIBE/UNSUBSCRIBE on the eventSubURLs reach the event service,
 * the initial event carries exactly the variables the SCPD marks as evented, and mapping and WAN
 * changes are published. Callbacks go to a receiver on 127.0.0.1 (the subscriber's own address).
 */

interface Notification {
  readonly path: string;
  readonly seq: number;
  readonly variables: Record<string, string>;
}

class CallbackReceiver {
  readonly received: Notification[] = [];
  private waiters: Array<() => void> = [];
  private readonly server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      this.received.push({ path: req.url ?? '', seq: Number(req.headers['seq']), variables: propertySetVariables(Buffer.concat(chunks).toString('utf8')) });
      res.writeHead(200, { 'Content-Length': '0' }).end();
      for (const wake of this.waiters.splice(0)) wake();
    });
  });

  async start(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as { port: number }).port;
  }

  /** Waits until a notification matching `match` has arrived. */
  async next(match: (n: Notification) => boolean, timeoutMs = 3_000): Promise<Notification> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.received.find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no matching NOTIFY; got ${JSON.stringify(this.received)}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

async function subscribe(f: IgdFixture, eventPath: string, callbackPort: number, tag: string) {
  const head = [
    `SUBSCRIBE ${eventPath} HTTP/1.1`,
    `Host: ${f.host}`,
    `CALLBACK: <http://127.0.0.1:${callbackPort}/${tag}>`,
    'NT: upnp:event',
    'TIMEOUT: Second-1800',
  ].join('\r\n');
  const response = await rawRequest(f.port, head);
  expect(response.status).toBe(200);
  // The event service's SERVER header, not a second one from the HTTP server.
  expect(response.headerLines.filter((line) => /^server:/i.test(line))).toHaveLength(1);
  return response.headers['sid']!;
}

async function eventedVariablesOf(f: IgdFixture, scpdPath: string): Promise<string[]> {
  const scpd = parseScpd((await rawRequest(f.port, `GET ${scpdPath} HTTP/1.1\r\nHost: ${f.host}`)).body);
  return scpd.serviceStateTable.stateVariable
    .filter((v) => v['@sendEvents'] === 'yes')
    .map((v) => v.name)
    .sort();
}

describe('eventing through the IGD front-end', () => {
  let f: IgdFixture;
  let receiver: CallbackReceiver;
  let callbackPort: number;

  beforeEach(async () => {
    f = await startIgd({ config: { externalIp: undefined } });
    f.network.wanAddresses = ['198.51.100.1'];
    await f.clock.advance(10_000);
    receiver = new CallbackReceiver();
    callbackPort = await receiver.start();
  });
  afterEach(async () => {
    await f.close();
    await receiver.close();
  });

  it.each([1, 2] as const)('[IGD:%i] sends, as the initial event, exactly the variables the SCPD marks as evented', async (view) => {
    for (const service of ['L3F', 'WANCommonIFC', 'WANIPConn']) {
      await subscribe(f, `/igd${view}/${service}/events`, callbackPort, `${view}-${service}`);
      const initial = await receiver.next((n) => n.path === `/${view}-${service}` && n.seq === 0);
      expect(Object.keys(initial.variables).sort()).toEqual(await eventedVariablesOf(f, `/igd${view}/${service}.xml`));
    }
  });

  it('publishes PortMappingNumberOfEntries and a new SystemUpdateID when the table changes', async () => {
    await subscribe(f, '/igd2/WANIPConn/events', callbackPort, 'v2');
    await subscribe(f, '/igd1/WANIPConn/events', callbackPort, 'v1');
    const initial = await receiver.next((n) => n.path === '/v2' && n.seq === 0);
    expect(initial.variables).toMatchObject({ PortMappingNumberOfEntries: '0', ConnectionStatus: 'Connected', ExternalIPAddress: '198.51.100.1' });

    expect((await soap(f, 'AddPortMapping', addArgs())).status).toBe(200);
    const v2 = await receiver.next((n) => n.path === '/v2' && n.seq === 1);
    expect(v2.variables).toEqual({ PortMappingNumberOfEntries: '1', SystemUpdateID: String(Number(initial.variables['SystemUpdateID']) + 1) });
    const v1 = await receiver.next((n) => n.path === '/v1' && n.seq === 1);
    expect(v1.variables).toEqual({ PortMappingNumberOfEntries: '1' });
  });

  it('publishes the external address, connection status and link status when the WAN address goes away', async () => {
    await subscribe(f, '/igd2/WANIPConn/events', callbackPort, 'ip');
    await subscribe(f, '/igd2/WANCommonIFC/events', callbackPort, 'link');
    await receiver.next((n) => n.path === '/link' && n.seq === 0);
    f.network.wanAddresses = [];
    await f.clock.advance(10_000);
    expect((await receiver.next((n) => n.path === '/ip' && n.seq === 1)).variables).toEqual({ ExternalIPAddress: '', ConnectionStatus: 'Disconnected' });
    expect((await receiver.next((n) => n.path === '/link' && n.seq === 1)).variables).toEqual({ PhysicalLinkStatus: 'Down' });
    expect((await soap(f, 'GetCommonLinkProperties', {}, { typePrefix: WANCOMMON })).values['NewPhysicalLinkStatus']).toBe('Down');
    expect(f.externalAddressChanges.at(-1)).toEqual({ previous: '198.51.100.1', current: '' });
  });

  it('publishes a new external address as soon as the kernel reports it (DHCP renewal), without waiting for a poll', async () => {
    await subscribe(f, '/igd2/WANIPConn/events', callbackPort, 'renew');
    await receiver.next((n) => n.path === '/renew' && n.seq === 0);
    const before = f.externalAddressChanges.length;
    f.network.renumberWan(['198.51.100.77']);
    expect((await receiver.next((n) => n.path === '/renew' && n.seq === 1)).variables).toMatchObject({ ExternalIPAddress: '198.51.100.77' });
    expect(f.externalAddressChanges.slice(before)).toEqual([{ previous: expect.any(String) as string, current: '198.51.100.77' }]);
    expect((await soap(f, 'GetExternalIPAddress', {})).values['NewExternalIPAddress']).toBe('198.51.100.77');
  });

  it('routes UNSUBSCRIBE: no events after it', async () => {
    const sid = await subscribe(f, '/igd2/WANIPConn/events', callbackPort, 'gone');
    await receiver.next((n) => n.path === '/gone' && n.seq === 0);
    const response = await rawRequest(f.port, [`UNSUBSCRIBE /igd2/WANIPConn/events HTTP/1.1`, `Host: ${f.host}`, `SID: ${sid}`].join('\r\n'));
    expect(response.status).toBe(200);
    await soap(f, 'AddPortMapping', addArgs());
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(receiver.received.filter((n) => n.path === '/gone').map((n) => n.seq)).toEqual([0]);
  });
});
