import { isIPv4 } from 'node:net';

/**
 * The little of STUN the benchmark's server needs: RFC 5389 Binding requests and success
 * responses, plus the RFC 5780 (formerly RFC 3489) CHANGE-REQUEST attribute and the attributes
 * that describe where a response came from. miniupnpd's NAT test sends four Binding requests
 * (no change, change port, change IP, both) and calls the NAT unrestricted only if all four are
 * answered with the gateway's own address and port.
 */

export const MAGIC_COOKIE = 0x2112a442;
const HEADER_LENGTH = 20;
const TRANSACTION_ID_LENGTH = 12;

const BINDING_REQUEST = 0x0001;
const BINDING_SUCCESS = 0x0101;

export const ATTRIBUTE = {
  mappedAddress: 0x0001,
  changeRequest: 0x0003,
  xorMappedAddress: 0x0020,
  responseOrigin: 0x802b,
  otherAddress: 0x802c,
} as const;

const CHANGE_IP_FLAG = 0x04;
const CHANGE_PORT_FLAG = 0x02;
const FAMILY_IPV4 = 0x01;

export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

export interface BindingRequest {
  readonly transactionId: Buffer;
  readonly changeIp: boolean;
  readonly changePort: boolean;
}

export interface BindingResponse {
  readonly transactionId: Buffer;
  /** The requester as the server saw it (sent as MAPPED-ADDRESS and XOR-MAPPED-ADDRESS). */
  readonly mapped: Endpoint;
  /** The address and port the response is sent from. */
  readonly origin: Endpoint;
  /** The server's other address and port, to which CHANGE-REQUEST moves. */
  readonly other: Endpoint;
}

/** Reads a Binding request; undefined for anything else (other methods, malformed or truncated datagrams). */
export function parseBindingRequest(datagram: Buffer): BindingRequest | undefined {
  if (datagram.length < HEADER_LENGTH) return undefined;
  if (datagram.readUInt16BE(0) !== BINDING_REQUEST) return undefined;
  const bodyLength = datagram.readUInt16BE(2);
  if (bodyLength % 4 !== 0 || HEADER_LENGTH + bodyLength > datagram.length) return undefined;
  if (datagram.readUInt32BE(4) !== MAGIC_COOKIE) return undefined;

  const transactionId = Buffer.from(datagram.subarray(8, HEADER_LENGTH));
  let flags = 0;
  for (const { type, value } of attributes(datagram.subarray(HEADER_LENGTH, HEADER_LENGTH + bodyLength))) {
    if (type === ATTRIBUTE.changeRequest && value.length === 4) flags = value.readUInt32BE(0);
  }
  return { transactionId, changeIp: (flags & CHANGE_IP_FLAG) !== 0, changePort: (flags & CHANGE_PORT_FLAG) !== 0 };
}

/** Encodes a Binding request (what a client sends; the tests use it to drive the server). */
export function encodeBindingRequest(request: BindingRequest): Buffer {
  if (request.transactionId.length !== TRANSACTION_ID_LENGTH) throw new RangeError('a transaction id has 12 bytes');
  const flags = (request.changeIp ? CHANGE_IP_FLAG : 0) | (request.changePort ? CHANGE_PORT_FLAG : 0);
  const value = Buffer.alloc(4);
  value.writeUInt32BE(flags);
  return message(BINDING_REQUEST, request.transactionId, [attribute(ATTRIBUTE.changeRequest, value)]);
}

/** Encodes a Binding success response. */
export function encodeBindingResponse(response: BindingResponse): Buffer {
  return message(BINDING_SUCCESS, response.transactionId, [
    attribute(ATTRIBUTE.mappedAddress, addressValue(response.mapped)),
    attribute(ATTRIBUTE.xorMappedAddress, xorAddressValue(response.mapped)),
    attribute(ATTRIBUTE.responseOrigin, addressValue(response.origin)),
    attribute(ATTRIBUTE.otherAddress, addressValue(response.other)),
  ]);
}

/** Reads a Binding success response's attributes (for tests): address attributes by type. */
export function parseBindingResponse(datagram: Buffer): { transactionId: Buffer; addresses: Map<number, Endpoint> } | undefined {
  if (datagram.length < HEADER_LENGTH || datagram.readUInt16BE(0) !== BINDING_SUCCESS) return undefined;
  const bodyLength = datagram.readUInt16BE(2);
  if (HEADER_LENGTH + bodyLength > datagram.length) return undefined;
  const addresses = new Map<number, Endpoint>();
  for (const { type, value } of attributes(datagram.subarray(HEADER_LENGTH, HEADER_LENGTH + bodyLength))) {
    if (value.length !== 8 || value[1] !== FAMILY_IPV4) continue;
    const xored = type === ATTRIBUTE.xorMappedAddress;
    const port = value.readUInt16BE(2) ^ (xored ? MAGIC_COOKIE >>> 16 : 0);
    const address = (value.readUInt32BE(4) ^ (xored ? MAGIC_COOKIE : 0)) >>> 0;
    addresses.set(type, { address: ipv4FromNumber(address), port });
  }
  return { transactionId: Buffer.from(datagram.subarray(8, HEADER_LENGTH)), addresses };
}

function* attributes(body: Buffer): Generator<{ type: number; value: Buffer }> {
  let offset = 0;
  while (offset + 4 <= body.length) {
    const type = body.readUInt16BE(offset);
    const length = body.readUInt16BE(offset + 2);
    const start = offset + 4;
    if (start + length > body.length) return;
    yield { type, value: body.subarray(start, start + length) };
    offset = start + Math.ceil(length / 4) * 4;
  }
}

function message(type: number, transactionId: Buffer, body: readonly Buffer[]): Buffer {
  const header = Buffer.alloc(HEADER_LENGTH);
  header.writeUInt16BE(type, 0);
  header.writeUInt16BE(
    body.reduce((sum, part) => sum + part.length, 0),
    2,
  );
  header.writeUInt32BE(MAGIC_COOKIE, 4);
  transactionId.copy(header, 8);
  return Buffer.concat([header, ...body]);
}

/** Attribute values used here are all multiples of 4 bytes long, so no padding is needed. */
function attribute(type: number, value: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt16BE(type, 0);
  header.writeUInt16BE(value.length, 2);
  return Buffer.concat([header, value]);
}

function addressValue({ address, port }: Endpoint): Buffer {
  const value = Buffer.alloc(8);
  value[1] = FAMILY_IPV4;
  value.writeUInt16BE(port, 2);
  value.writeUInt32BE(ipv4ToNumber(address), 4);
  return value;
}

function xorAddressValue({ address, port }: Endpoint): Buffer {
  const value = Buffer.alloc(8);
  value[1] = FAMILY_IPV4;
  value.writeUInt16BE(port ^ (MAGIC_COOKIE >>> 16), 2);
  value.writeUInt32BE((ipv4ToNumber(address) ^ MAGIC_COOKIE) >>> 0, 4);
  return value;
}

function ipv4ToNumber(address: string): number {
  if (!isIPv4(address)) throw new RangeError(`not an IPv4 address: ${address}`);
  return address.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}

function ipv4FromNumber(n: number): string {
  return [24, 16, 8, 0].map((shift) => (n >>> shift) & 0xff).join('.');
}
