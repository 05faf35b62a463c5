import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { NatPmpLoad } from '../load/natpmp.js';

/** A NAT-PMP server on loopback that records each request and answers as `answer` says. */
async function fakeGateway(
  answer: (request: Buffer) => { result: number; externalPort?: number },
): Promise<{ port: number; requests: Buffer[]; socket: Socket }> {
  const socket = createSocket('udp4');
  const requests: Buffer[] = [];
  socket.on('message', (request, peer) => {
    requests.push(request);
    const { result, externalPort } = answer(request);
    const response = Buffer.alloc(16);
    response.writeUInt8(128 + request.readUInt8(1), 1);
    response.writeUInt16BE(result, 2);
    response.writeUInt16BE(request.readUInt16BE(4), 8);
    response.writeUInt16BE(externalPort ?? request.readUInt16BE(6), 10);
    response.writeUInt32BE(request.readUInt32BE(8), 12);
    socket.send(response, peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { port: socket.address().port, requests, socket };
}

describe('the NAT-PMP load', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  });
  const load = async (answer: Parameters<typeof fakeGateway>[0]) => {
    const gateway = await fakeGateway(answer);
    const natPmp = new NatPmpLoad(['127.0.0.1'], gateway.port);
    cleanups.push(
      () => natPmp.close(),
      () => gateway.socket.close(),
    );
    return { gateway, natPmp };
  };

  it('sends a TCP map with the lifetime, then its delete (lifetime 0, external port 0), per cycle', async () => {
    const { gateway, natPmp } = await load(() => ({ result: 0 }));
    const result = await natPmp.run({
      kind: 'natPmpCycles',
      gateway: '127.0.0.1',
      concurrency: 1,
      hostsPerWorker: 1,
      warmupMs: 0,
      maxOps: 3,
      maxMs: 5_000,
      firstPort: 45000,
    });
    expect(result.ops).toBe(3);
    expect(gateway.requests).toHaveLength(6);
    expect(gateway.requests[0]!.toString('hex')).toBe('0002' + '0000' + 'afc8' + 'afc8' + '00000e10');
    expect(gateway.requests[1]!.toString('hex')).toBe('0002' + '0000' + 'afc8' + '0000' + '00000000');
  });

  it('maps N ports in turn and notes the checkpoints', async () => {
    const { gateway, natPmp } = await load(() => ({ result: 0 }));
    const result = await natPmp.run({ kind: 'natPmpMapMany', gateway: '127.0.0.1', firstPort: 20000, count: 5, checkpoints: [2, 5], maxMs: 5_000 });
    expect(result.added).toBe(5);
    expect(Object.keys(result.checkpointMs)).toEqual(['2', '5']);
    expect(gateway.requests.map((r) => r.readUInt16BE(4))).toEqual([20000, 20001, 20002, 20003, 20004]);
  });

  it('stops on a result code other than success, naming it', async () => {
    const { natPmp } = await load(() => ({ result: 2 }));
    await expect(natPmp.run({ kind: 'natPmpMapMany', gateway: '127.0.0.1', firstPort: 20000, count: 1, checkpoints: [], maxMs: 5_000 })).rejects.toThrow(
      /result code 2/,
    );
  });

  it('stops when a free port is granted as another external port', async () => {
    const { natPmp } = await load(() => ({ result: 0, externalPort: 30000 }));
    await expect(natPmp.run({ kind: 'natPmpMapMany', gateway: '127.0.0.1', firstPort: 20000, count: 1, checkpoints: [], maxMs: 5_000 })).rejects.toThrow(
      /granted external port 30000/,
    );
  });

  it('refuses to run without LAN host addresses', async () => {
    await expect(new NatPmpLoad([]).run({ kind: 'natPmpMapMany', gateway: '127.0.0.1', firstPort: 1, count: 1, checkpoints: [], maxMs: 1 })).rejects.toThrow(
      /--host/,
    );
  });
});
