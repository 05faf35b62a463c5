import { createSocket } from 'node:dgram';

/**
 * A small NAT-PMP (RFC 6886) and PCP (RFC 6887) client for tests, written from the RFCs and
 * independent of plugins/nat-pmp/codec.ts, so that a mistake there is caught here.
 */

export const PCP = {
  version: 2,
  opcode: { announce: 0, map: 1, peer: 2 },
  option: { thirdParty: 1, preferFailure: 2, filter: 3 },
  protocol: { tcp: 6, udp: 17 },
  result: {
    SUCCESS: 0,
    UNSUPP_VERSION: 1,
    NOT_AUTHORIZED: 2,
    MALFORMED_REQUEST: 3,
    UNSUPP_OPCODE: 4,
    UNSUPP_OPTION: 5,
    MALFORMED_OPTION: 6,
    NETWORK_FAILURE: 7,
    NO_RESOURCES: 8,
    UNSUPP_PROTOCOL: 9,
    USER_EX_QUOTA: 10,
    CANNOT_PROVIDE_EXTERNAL: 11,
    ADDRESS_MISMATCH: 12,
    EXCESSIVE_REMOTE_PEERS: 13,
  },
} as const;

/**
 * An address as PCP's 16 octets (RFC 6887 §5): IPv4 as ::ffff:a.b.c.d, IPv6 as it is (a zone,
 * `%eth0`, is not carried).
 */
export function mapped(address: string): Buffer {
  if (!address.includes(':')) return Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...address.split('.').map(Number)]);
  const bare = address.split('%')[0]!;
  const [left, right] = bare.includes('::') ? bare.split('::') : [bare, undefined];
  const head = left ? left.split(':') : [];
  const tail = right ? right.split(':') : [];
  const groups = right === undefined ? head : [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  return Buffer.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
}

/** 16 octets as text: dotted IPv4 when IPv4-mapped, else IPv6 in RFC 5952 form (as the WHATWG URL parser writes it). */
function unmapped(bytes: Buffer): string {
  if (bytes.subarray(0, 12).equals(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]))) return [...bytes.subarray(12, 16)].join('.');
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2).toString(16));
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

export interface PcpOptionSpec {
  readonly code: number;
  readonly data?: Buffer;
}

/** RFC 6887 §7.3: code, reserved, length, data padded to 4 octets. */
function option({ code, data = Buffer.alloc(0) }: PcpOptionSpec): Buffer {
  const out = Buffer.alloc(4 + Math.ceil(data.length / 4) * 4);
  out.writeUInt8(code, 0);
  out.writeUInt16BE(data.length, 2);
  data.copy(out, 4);
  return out;
}

/** FILTER (RFC 6887 §13.3): prefix length counts the IPv4-mapped bits (128 = one IPv4 host); an IPv6 peer as it is. */
export function filterOption(remote: string, prefixLength = 128, remotePort = 0): PcpOptionSpec {
  const data = Buffer.alloc(20);
  data.writeUInt8(prefixLength, 1);
  data.writeUInt16BE(remotePort, 2);
  mapped(remote).copy(data, 4);
  return { code: PCP.option.filter, data };
}

export function thirdPartyOption(internal: string): PcpOptionSpec {
  return { code: PCP.option.thirdParty, data: mapped(internal) };
}

export const PREFER_FAILURE: PcpOptionSpec = { code: PCP.option.preferFailure };

/** RFC 6887 §7.1 request header. */
function header(version: number, opcode: number, lifetime: number, client: string): Buffer {
  const out = Buffer.alloc(24);
  out.writeUInt8(version, 0);
  out.writeUInt8(opcode & 0x7f, 1);
  out.writeUInt32BE(lifetime, 4);
  mapped(client).copy(out, 8);
  return out;
}

export function announceRequest(client: string, version: number = PCP.version): Buffer {
  return header(version, PCP.opcode.announce, 0, client);
}

export interface MapRequestSpec {
  readonly client: string;
  readonly nonce: Buffer;
  readonly protocol: number;
  readonly internalPort: number;
  readonly suggestedPort?: number;
  readonly suggestedAddress?: string;
  readonly lifetime: number;
  readonly options?: readonly PcpOptionSpec[];
  readonly version?: number;
  readonly opcode?: number;
}

/** RFC 6887 §11.1 MAP request. */
export function mapRequest(spec: MapRequestSpec): Buffer {
  const body = Buffer.alloc(36);
  spec.nonce.copy(body, 0, 0, 12);
  body.writeUInt8(spec.protocol, 12);
  body.writeUInt16BE(spec.internalPort, 16);
  body.writeUInt16BE(spec.suggestedPort ?? 0, 18);
  mapped(spec.suggestedAddress ?? '0.0.0.0').copy(body, 20);
  return Buffer.concat([
    header(spec.version ?? PCP.version, spec.opcode ?? PCP.opcode.map, spec.lifetime, spec.client),
    body,
    ...(spec.options ?? []).map(option),
  ]);
}

export interface PcpResponse {
  readonly version: number;
  readonly opcode: number;
  readonly isResponse: boolean;
  readonly result: number;
  readonly lifetime: number;
  readonly epoch: number;
  readonly length: number;
  readonly map?: {
    readonly nonce: Buffer;
    readonly protocol: number;
    readonly internalPort: number;
    readonly externalPort: number;
    readonly externalAddress: string;
  };
}

/** RFC 6887 §7.2 response header, and the MAP part when there is one. */
export function parsePcpResponse(packet: Buffer): PcpResponse {
  const response = {
    version: packet.readUInt8(0),
    opcode: packet.readUInt8(1) & 0x7f,
    isResponse: (packet.readUInt8(1) & 0x80) !== 0,
    result: packet.readUInt8(3),
    lifetime: packet.readUInt32BE(4),
    epoch: packet.readUInt32BE(8),
    length: packet.length,
  };
  if (response.opcode !== PCP.opcode.map || packet.length < 60) return response;
  return {
    ...response,
    map: {
      nonce: packet.subarray(24, 36),
      protocol: packet.readUInt8(36),
      internalPort: packet.readUInt16BE(40),
      externalPort: packet.readUInt16BE(42),
      externalAddress: unmapped(packet.subarray(44, 60)),
    },
  };
}

/** RFC 6886 §3.3 mapping request (opcode 1 UDP, 2 TCP). */
export function natPmpMapRequest(protocol: 'udp' | 'tcp', internalPort: number, suggestedPort: number, lifetime: number): Buffer {
  const out = Buffer.alloc(12);
  out.writeUInt8(protocol === 'udp' ? 1 : 2, 1);
  out.writeUInt16BE(internalPort, 4);
  out.writeUInt16BE(suggestedPort, 6);
  out.writeUInt32BE(lifetime, 8);
  return out;
}

export const NAT_PMP_EXTERNAL_ADDRESS_REQUEST = Buffer.from([0, 0]);

export interface NatPmpResponse {
  readonly version: number;
  readonly opcode: number;
  readonly result: number;
  readonly epoch: number;
  readonly length: number;
  readonly externalAddress?: string;
  readonly internalPort?: number;
  readonly externalPort?: number;
  readonly lifetime?: number;
}

export function parseNatPmpResponse(packet: Buffer): NatPmpResponse {
  const base = {
    version: packet.readUInt8(0),
    opcode: packet.readUInt8(1),
    result: packet.readUInt16BE(2),
    epoch: packet.readUInt32BE(4),
    length: packet.length,
  };
  if (base.opcode === 128 && packet.length >= 12) return { ...base, externalAddress: [...packet.subarray(8, 12)].join('.') };
  if ((base.opcode === 129 || base.opcode === 130) && packet.length >= 16) {
    return { ...base, internalPort: packet.readUInt16BE(8), externalPort: packet.readUInt16BE(10), lifetime: packet.readUInt32BE(12) };
  }
  return base;
}

/** Sends one datagram from `localAddress` and waits for one answer; undefined when none comes in time. */
export function exchange(packet: Buffer, to: { host: string; port: number; localAddress?: string }, timeoutMs = 1_000): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const socket = createSocket(to.host.includes(':') ? 'udp6' : 'udp4');
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    const finish = (answer: Buffer | undefined) => {
      clearTimeout(timer);
      socket.close();
      resolve(answer);
    };
    socket.on('error', (err) => {
      clearTimeout(timer);
      socket.close();
      reject(err);
    });
    socket.on('message', (answer) => finish(answer));
    socket.bind(0, to.localAddress, () => socket.send(packet, to.port, to.host));
  });
}

/**
 * The same exchange as a script for `node -e` inside a namespace: args host, port, packet hex,
 * local address ('' for any), timeout ms; IPv6 when the host has a colon (`fe80::1%eth0` too). Prints `ANSWER <hex>` or `NO ANSWER`, then exits.
 */
export const EXCHANGE_SCRIPT = `
const [host, port, hex, localAddress, timeout] = process.argv.slice(1);
const socket = require('node:dgram').createSocket(host.includes(':') ? 'udp6' : 'udp4');
setTimeout(() => { console.log('NO ANSWER'); process.exit(0); }, Number(timeout));
socket.on('message', (m) => { console.log('ANSWER ' + m.toString('hex')); process.exit(0); });
socket.on('error', (e) => { console.log('ERROR ' + e.message); process.exit(1); });
socket.bind(0, localAddress || undefined, () => socket.send(Buffer.from(hex, 'hex'), Number(port), host));
`;
