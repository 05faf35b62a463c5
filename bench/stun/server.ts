import { createSocket, type Socket } from 'node:dgram';
import { encodeBindingResponse, parseBindingRequest, type Endpoint } from './message.js';

export interface StunServerOptions {
  /** Primary and alternate address (CHANGE-REQUEST "change IP" answers from the other one). */
  readonly addresses: readonly [string, string];
  /** Primary and alternate port; 0 picks a free one (the same on both addresses). */
  readonly ports: readonly [number, number];
}

export interface StunServer {
  /** The primary endpoint, where clients send their requests. */
  readonly primary: Endpoint;
  /** Every request answered so far (for the harness's log). */
  readonly answered: () => number;
  close(): Promise<void>;
}

/**
 * A STUN server with four sockets, (address × port), as RFC 5780 NAT-behaviour discovery expects:
 * a request that asks to change IP and/or port is answered from the matching other socket. On
 * the benchmark's WAN host this tells miniupnpd the truth about the testbed: its WAN address is
 * reachable from outside without filtering, so port forwarding works.
 */
export async function startStunServer(options: StunServerOptions): Promise<StunServer> {
  const sockets = new Map<string, Socket>();
  const key = (addressIndex: number, portIndex: number) => `${addressIndex}/${portIndex}`;
  const ports = [...options.ports];
  let answered = 0;

  try {
    for (const portIndex of [0, 1]) {
      for (const addressIndex of [0, 1]) {
        const socket = await bind(options.addresses[addressIndex]!, ports[portIndex]!);
        ports[portIndex] = socket.address().port;
        sockets.set(key(addressIndex, portIndex), socket);
      }
    }
  } catch (err) {
    await closeAll(sockets.values());
    throw err;
  }

  const endpoint = (addressIndex: number, portIndex: number): Endpoint => ({ address: options.addresses[addressIndex]!, port: ports[portIndex]! });
  for (const [addressIndex, portIndex] of [
    [0, 0],
    [0, 1],
    [1, 0],
    [1, 1],
  ] as const) {
    sockets.get(key(addressIndex, portIndex))!.on('message', (datagram, peer) => {
      const request = parseBindingRequest(datagram);
      if (!request) return;
      const fromAddress = request.changeIp ? 1 - addressIndex : addressIndex;
      const fromPort = request.changePort ? 1 - portIndex : portIndex;
      const response = encodeBindingResponse({
        transactionId: request.transactionId,
        mapped: { address: peer.address, port: peer.port },
        origin: endpoint(fromAddress, fromPort),
        other: endpoint(1 - fromAddress, 1 - fromPort),
      });
      answered += 1;
      sockets.get(key(fromAddress, fromPort))!.send(response, peer.port, peer.address);
    });
  }

  return {
    primary: endpoint(0, 0),
    answered: () => answered,
    close: () => closeAll(sockets.values()),
  };
}

function bind(address: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    socket.once('error', reject);
    socket.bind(port, address, () => {
      socket.off('error', reject);
      // A send to an unreachable client must not crash the server.
      socket.on('error', () => {});
      resolve(socket);
    });
  });
}

async function closeAll(sockets: Iterable<Socket>): Promise<void> {
  await Promise.all([...sockets].map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))));
}
