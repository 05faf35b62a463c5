import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { ATTRIBUTE, encodeBindingRequest, parseBindingResponse, type Endpoint } from '../stun/message.js';
import { startStunServer, type StunServer } from '../stun/server.js';

// Loopback only: 127.0.0.1 and 127.0.0.2 are both local addresses on Linux.
const ADDRESSES = ['127.0.0.1', '127.0.0.2'] as const;

let server: StunServer | undefined;
let client: Socket | undefined;
afterEach(async () => {
  await server?.close();
  client?.close();
  server = client = undefined;
});

describe('STUN server', () => {
  it('answers the four NAT-test requests from the socket each asks for, with the client as mapped address', async () => {
    server = await startStunServer({ addresses: ADDRESSES, ports: [0, 0] });
    client = createSocket('udp4');
    await new Promise<void>((resolve) => client!.bind(0, '127.0.0.1', resolve));
    const clientPort = client.address().port;
    const responses = new Map<string, { from: Endpoint; datagram: Buffer }>();
    client.on('message', (datagram, from) =>
      responses.set(datagram.subarray(8, 20).toString('hex'), { from: { address: from.address, port: from.port }, datagram }),
    );

    const primary = server.primary;
    const cases = [
      { changeIp: false, changePort: false },
      { changeIp: false, changePort: true },
      { changeIp: true, changePort: false },
      { changeIp: true, changePort: true },
    ].map((flags, i) => ({ ...flags, transactionId: Buffer.alloc(12, i + 1) }));
    for (const request of cases) client.send(encodeBindingRequest(request), primary.port, primary.address);
    await waitUntil(() => responses.size === cases.length);

    const origins = cases.map((request) => {
      const { from, datagram } = responses.get(request.transactionId.toString('hex'))!;
      const parsed = parseBindingResponse(datagram)!;
      expect(parsed.addresses.get(ATTRIBUTE.xorMappedAddress)).toEqual({ address: '127.0.0.1', port: clientPort });
      expect(parsed.addresses.get(ATTRIBUTE.responseOrigin)).toEqual(from);
      expect(from.address).toBe(request.changeIp ? ADDRESSES[1] : ADDRESSES[0]);
      expect(from.port === primary.port).toBe(!request.changePort);
      return `${from.address}:${from.port}`;
    });
    expect(new Set(origins).size).toBe(4);
    expect(origins[0]).toBe(`${primary.address}:${primary.port}`);
    expect(server.answered()).toBe(4);
  });

  it('ignores datagrams that are not Binding requests', async () => {
    server = await startStunServer({ addresses: ADDRESSES, ports: [0, 0] });
    client = createSocket('udp4');
    let received = 0;
    client.on('message', () => (received += 1));
    client.send(Buffer.from('not stun at all, just some bytes'), server.primary.port, server.primary.address);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(received).toBe(0);
    expect(server.answered()).toBe(0);
  });
});

async function waitUntil(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !condition(); i += 1) await new Promise((resolve) => setTimeout(resolve, 20));
  if (!condition()) throw new Error('timed out waiting for STUN responses');
}
