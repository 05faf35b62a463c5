/**
 * NAT-PMP (RFC 6886) and PCP (RFC 6887) packets as data: pure parsing and building, no sockets.
 * Both protocols share UDP 5351 and are told apart by the first octet (version 0 is NAT-PMP).
 */

export const NAT_PMP_VERSION = 0;
export const PCP_VERSION = 2;
/** RFC 6887 §7: a PCP message is at most 1100 octets. */
export const PCP_MAX_MESSAGE = 1100;
const PCP_HEADER = 24;
/** RFC 6887 §11.1: the MAP opcode-specific part. */
const MAP_PAYLOAD = 36;
const RESPONSE_BIT = 0x80;

/** NAT-PMP opcodes (RFC 6886 §3.2, §3.3). */
export const NatPmpOpcode = { externalAddress: 0, mapUdp: 1, mapTcp: 2 } as const;

/** NAT-PMP result codes (RFC 6886 §3.5). */
export const NatPmpResult = {
  success: 0,
  unsupportedVersion: 1,
  notAuthorized: 2,
  networkFailure: 3,
  outOfResources: 4,
  unsupportedOpcode: 5,
} as const;
export type NatPmpResult = (typeof NatPmpResult)[keyof typeof NatPmpResult];

/** PCP opcodes we know (RFC 6887 §19.2). PEER is known but not served (UNSUPP_OPCODE). */
export const PcpOpcode = { announce: 0, map: 1, peer: 2 } as const;

/** Whether a datagram asks for a mapping or its deletion (NAT-PMP map, PCP MAP): the requests that wait on the mapping lifecycle. */
export function asksForMapping(packet: Buffer): boolean {
  if (packet[0] === NAT_PMP_VERSION) return packet[1] === NatPmpOpcode.mapUdp || packet[1] === NatPmpOpcode.mapTcp;
  return packet[0] === PCP_VERSION && packet[1] === PcpOpcode.map;
}

/** PCP result codes (RFC 6887 §7.4). */
export const PcpResult = {
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
} as const;
export type PcpResult = (typeof PcpResult)[keyof typeof PcpResult];

/** PCP option codes (RFC 6887 §13). Codes 0-127 are mandatory to process, 128-255 optional. */
export const PcpOption = { THIRD_PARTY: 1, PREFER_FAILURE: 2, FILTER: 3 } as const;

/** IANA protocol numbers PCP carries in MAP. */
export const IP_PROTOCOL = { TCP: 6, UDP: 17 } as const;

// ---------------------------------------------------------------------------------------------
// NAT-PMP
// ---------------------------------------------------------------------------------------------

export type NatPmpRequest =
  | { readonly kind: 'external-address' }
  | { readonly kind: 'map'; readonly protocol: 'TCP' | 'UDP'; readonly internalPort: number; readonly suggestedExternalPort: number; readonly lifetime: number }
  /** An opcode NAT-PMP does not define: answered with result 5. */
  | { readonly kind: 'unsupported-opcode'; readonly opcode: number }
  /** Too short for its opcode: dropped (NAT-PMP has no result code for it). */
  | { readonly kind: 'malformed' }
  /** Opcode 128 or more: a response, not a request (RFC 6886 §3.5: silently ignored). */
  | { readonly kind: 'response' };

/** A version-0 request (the caller checked the version octet). */
export function parseNatPmp(packet: Buffer): NatPmpRequest {
  if (packet.length < 2) return { kind: 'malformed' };
  const opcode = packet[1]!;
  if ((opcode & RESPONSE_BIT) !== 0) return { kind: 'response' };
  if (opcode === NatPmpOpcode.externalAddress) return { kind: 'external-address' };
  if (opcode !== NatPmpOpcode.mapUdp && opcode !== NatPmpOpcode.mapTcp) return { kind: 'unsupported-opcode', opcode };
  if (packet.length < 12) return { kind: 'malformed' };
  return {
    kind: 'map',
    protocol: opcode === NatPmpOpcode.mapUdp ? 'UDP' : 'TCP',
    internalPort: packet.readUInt16BE(4),
    suggestedExternalPort: packet.readUInt16BE(6),
    lifetime: packet.readUInt32BE(8),
  };
}

/** RFC 6886 §3.2: the external address response (also what an announcement sends). */
export function natPmpExternalAddressResponse(result: NatPmpResult, epoch: number, address: string | undefined): Buffer {
  const out = Buffer.alloc(12);
  out[1] = RESPONSE_BIT | NatPmpOpcode.externalAddress;
  out.writeUInt16BE(result, 2);
  out.writeUInt32BE(epoch >>> 0, 4);
  if (address !== undefined) ipv4Bytes(address).copy(out, 8);
  return out;
}

/** RFC 6886 §3.3: the mapping response. */
export function natPmpMapResponse(
  protocol: 'TCP' | 'UDP',
  result: NatPmpResult,
  epoch: number,
  fields: { internalPort: number; externalPort: number; lifetime: number },
): Buffer {
  const out = Buffer.alloc(16);
  out[1] = RESPONSE_BIT | (protocol === 'UDP' ? NatPmpOpcode.mapUdp : NatPmpOpcode.mapTcp);
  out.writeUInt16BE(result, 2);
  out.writeUInt32BE(epoch >>> 0, 4);
  out.writeUInt16BE(fields.internalPort, 8);
  out.writeUInt16BE(fields.externalPort, 10);
  out.writeUInt32BE(fields.lifetime >>> 0, 12);
  return out;
}

/** RFC 6886 §3.5: the 8-octet answer to an opcode it does not support (opcode + 128, result 5). */
export function natPmpErrorResponse(opcode: number, result: NatPmpResult, epoch: number): Buffer {
  const out = Buffer.alloc(8);
  out[1] = (RESPONSE_BIT | opcode) & 0xff;
  out.writeUInt16BE(result, 2);
  out.writeUInt32BE(epoch >>> 0, 4);
  return out;
}

/** RFC 6886 §3.5: the "Unsupported Version" answer, as the RFC draws it: version 0, OP = 0, result 1, the epoch. */
export function natPmpUnsupportedVersionResponse(epoch: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeUInt16BE(NatPmpResult.unsupportedVersion, 2);
  out.writeUInt32BE(epoch >>> 0, 4);
  return out;
}

// ---------------------------------------------------------------------------------------------
// PCP
// ---------------------------------------------------------------------------------------------

/** A FILTER option (RFC 6887 §13.3). */
export interface PcpFilter {
  readonly prefixLength: number;
  readonly remotePort: number;
  /** The remote peer address as text (IPv4 dotted when IPv4-mapped). */
  readonly remoteAddress: string;
}

export interface PcpOptions {
  readonly thirdParty?: string;
  readonly preferFailure: boolean;
  readonly filters: readonly PcpFilter[];
}

export interface PcpMapPayload {
  /** 12 octets. */
  readonly nonce: Buffer;
  /** IANA protocol number (0: all protocols). */
  readonly protocol: number;
  readonly internalPort: number;
  readonly suggestedExternalPort: number;
  /** The suggested external address as text; '' for "none" (all zeros or ::ffff:0.0.0.0). */
  readonly suggestedExternalAddress: string;
}

export interface PcpRequest {
  readonly opcode: number;
  readonly lifetime: number;
  /** The client address field as text (IPv4 dotted when IPv4-mapped). */
  readonly clientAddress: string;
  readonly map?: PcpMapPayload;
  readonly options: PcpOptions;
  /** The opcode-specific part and options as received (echoed in error responses). */
  readonly body: Buffer;
}

export type PcpParse =
  /** Not answered at all (RFC 6887 §8.3: shorter than 2 octets, or a response). */
  | { readonly kind: 'drop' }
  | { readonly kind: 'error'; readonly result: PcpResult; readonly opcode: number; readonly body: Buffer }
  | { readonly kind: 'request'; readonly request: PcpRequest };

/** Options each opcode may carry. */
const OPTIONS_OF_OPCODE: Readonly<Record<number, ReadonlySet<number>>> = {
  [PcpOpcode.announce]: new Set(),
  [PcpOpcode.map]: new Set([PcpOption.THIRD_PARTY, PcpOption.PREFER_FAILURE, PcpOption.FILTER]),
};

/** Parses a PCP request (version octet not 0) as RFC 6887 §8.3 says a server validates it. */
export function parsePcp(packet: Buffer): PcpParse {
  if (packet.length < 2 || (packet[1]! & RESPONSE_BIT) !== 0) return { kind: 'drop' };
  const opcode = packet[1]! & 0x7f;
  const body = packet.subarray(PCP_HEADER, PCP_MAX_MESSAGE);
  const error = (result: PcpResult): PcpParse => ({ kind: 'error', result, opcode, body });
  if (packet[0] !== PCP_VERSION) return error(PcpResult.UNSUPP_VERSION);
  if (packet.length < PCP_HEADER || packet.length > PCP_MAX_MESSAGE || packet.length % 4 !== 0) return error(PcpResult.MALFORMED_REQUEST);
  const allowedOptions = OPTIONS_OF_OPCODE[opcode];
  if (!allowedOptions) return error(PcpResult.UNSUPP_OPCODE);
  const lifetime = packet.readUInt32BE(4);
  const clientAddress = addressText(packet.subarray(8, 24));
  let offset = PCP_HEADER;
  let map: PcpMapPayload | undefined;
  if (opcode === PcpOpcode.map) {
    if (packet.length < PCP_HEADER + MAP_PAYLOAD) return error(PcpResult.MALFORMED_REQUEST);
    map = {
      nonce: Buffer.from(packet.subarray(24, 36)),
      protocol: packet[36]!,
      internalPort: packet.readUInt16BE(40),
      suggestedExternalPort: packet.readUInt16BE(42),
      suggestedExternalAddress: unspecifiedToEmpty(addressText(packet.subarray(44, 60))),
    };
    offset += MAP_PAYLOAD;
  }
  const options = parseOptions(packet, offset, allowedOptions);
  if ('result' in options) return error(options.result);
  return { kind: 'request', request: { opcode, lifetime, clientAddress, map, options, body } };
}

function parseOptions(packet: Buffer, start: number, allowed: ReadonlySet<number>): PcpOptions | { result: PcpResult } {
  let thirdParty: string | undefined;
  let preferFailure = false;
  const filters: PcpFilter[] = [];
  let offset = start;
  while (offset < packet.length) {
    if (offset + 4 > packet.length) return { result: PcpResult.MALFORMED_OPTION };
    const code = packet[offset]!;
    const length = packet.readUInt16BE(offset + 2);
    const data = offset + 4;
    // Option data is padded to a multiple of 4 octets (RFC 6887 §7.3).
    const next = data + Math.ceil(length / 4) * 4;
    if (next > packet.length) return { result: PcpResult.MALFORMED_OPTION };
    offset = next;
    if (!allowed.has(code)) {
      if (code < 128) return { result: PcpResult.UNSUPP_OPTION };
      continue;
    }
    if (code === PcpOption.THIRD_PARTY) {
      if (length !== 16 || thirdParty !== undefined) return { result: PcpResult.MALFORMED_OPTION };
      thirdParty = addressText(packet.subarray(data, data + 16));
    } else if (code === PcpOption.PREFER_FAILURE) {
      if (length !== 0 || preferFailure) return { result: PcpResult.MALFORMED_OPTION };
      preferFailure = true;
    } else if (code === PcpOption.FILTER) {
      if (length !== 20) return { result: PcpResult.MALFORMED_OPTION };
      const prefixLength = packet[data + 1]!;
      const remoteAddress = addressText(packet.subarray(data + 4, data + 20));
      // An IPv4 peer is IPv4-mapped: its prefix counts the 96 bits of the mapping (RFC 6887 §13.3).
      const mapped = remoteAddress.includes('.');
      if (prefixLength > 128 || (mapped && prefixLength !== 0 && prefixLength < 96)) return { result: PcpResult.MALFORMED_OPTION };
      filters.push({ prefixLength, remotePort: packet.readUInt16BE(data + 2), remoteAddress });
    }
  }
  return { thirdParty, preferFailure, filters };
}

export interface PcpResponseFields {
  readonly opcode: number;
  readonly result: PcpResult;
  readonly lifetime: number;
  readonly epoch: number;
  /** Opcode-specific part and options (an error response echoes the request's). */
  readonly body?: Buffer;
}

/** RFC 6887 §7.2: the response header, then the body, cut to 1100 octets and a multiple of 4. */
export function pcpResponse(fields: PcpResponseFields): Buffer {
  const body = fields.body ?? Buffer.alloc(0);
  const length = Math.min(PCP_MAX_MESSAGE, PCP_HEADER + body.length) & ~3;
  const out = Buffer.alloc(length);
  out[0] = PCP_VERSION;
  out[1] = RESPONSE_BIT | (fields.opcode & 0x7f);
  out[3] = fields.result;
  out.writeUInt32BE(fields.lifetime >>> 0, 4);
  out.writeUInt32BE(fields.epoch >>> 0, 8);
  body.copy(out, PCP_HEADER, 0, length - PCP_HEADER);
  return out;
}

/** The MAP response's opcode-specific part (RFC 6887 §11.1), followed by the options echoed. */
export function mapResponseBody(map: PcpMapPayload, assigned: { externalPort: number; externalAddress: string }, options: readonly Buffer[] = []): Buffer {
  const payload = Buffer.alloc(MAP_PAYLOAD);
  map.nonce.copy(payload, 0);
  payload[12] = map.protocol;
  payload.writeUInt16BE(map.internalPort, 16);
  payload.writeUInt16BE(assigned.externalPort, 18);
  addressBytes(assigned.externalAddress).copy(payload, 20);
  return Buffer.concat([payload, ...options]);
}

/** A MAP request's opcode-specific part (for clients and tests). */
export function mapRequestBody(map: PcpMapPayload): Buffer {
  const payload = Buffer.alloc(MAP_PAYLOAD);
  map.nonce.copy(payload, 0);
  payload[12] = map.protocol;
  payload.writeUInt16BE(map.internalPort, 16);
  payload.writeUInt16BE(map.suggestedExternalPort, 18);
  addressBytes(map.suggestedExternalAddress || '0.0.0.0').copy(payload, 20);
  return payload;
}

/** One option, padded (for responses that echo FILTER or PREFER_FAILURE, for clients and tests). */
export function pcpOption(code: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.alloc(4 + Math.ceil(data.length / 4) * 4);
  out[0] = code;
  out.writeUInt16BE(data.length, 2);
  data.copy(out, 4);
  return out;
}

/** The FILTER option's data (RFC 6887 §13.3). */
export function filterOptionData(filter: PcpFilter): Buffer {
  const data = Buffer.alloc(20);
  data[1] = filter.prefixLength;
  data.writeUInt16BE(filter.remotePort, 2);
  addressBytes(filter.remoteAddress).copy(data, 4);
  return data;
}

/** A PCP request (for clients and tests): header with the client address, then the body. */
export function pcpRequest(fields: { version?: number; opcode: number; lifetime: number; clientAddress: string; body?: Buffer }): Buffer {
  const header = Buffer.alloc(PCP_HEADER);
  header[0] = fields.version ?? PCP_VERSION;
  header[1] = fields.opcode & 0x7f;
  header.writeUInt32BE(fields.lifetime >>> 0, 4);
  addressBytes(fields.clientAddress).copy(header, 8);
  return Buffer.concat([header, fields.body ?? Buffer.alloc(0)]);
}

// ---------------------------------------------------------------------------------------------
// Addresses: PCP carries every address in 16 octets, IPv4 as ::ffff:a.b.c.d
// ---------------------------------------------------------------------------------------------

const V4_MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

/** 16 octets as text: 'a.b.c.d' when IPv4-mapped, else IPv6 text. */
export function addressText(bytes: Buffer): string {
  if (bytes.subarray(0, 12).equals(V4_MAPPED_PREFIX)) return [...bytes.subarray(12, 16)].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return compressIpv6(groups);
}

/** Text ('a.b.c.d' or IPv6) as 16 octets. */
export function addressBytes(address: string): Buffer {
  const out = Buffer.alloc(16);
  if (address.includes('.')) {
    V4_MAPPED_PREFIX.copy(out, 0);
    ipv4Bytes(address).copy(out, 12);
    return out;
  }
  const [head = '', tail = ''] = address.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === '' ? [] : tail.split(':');
  const groups = address.includes('::') ? [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups] : headGroups;
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16) & 0xffff, i * 2));
  return out;
}

function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map((octet) => Number(octet) & 255));
}

function unspecifiedToEmpty(address: string): string {
  return address === '0.0.0.0' || address === '::' ? '' : address;
}

function compressIpv6(groups: string[]): string {
  let best = { start: -1, length: 0 };
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > best.length) best = { start: i, length: j - i };
    i = j;
  }
  if (best.length < 2) return groups.join(':');
  return `${groups.slice(0, best.start).join(':')}::${groups.slice(best.start + best.length).join(':')}`;
}
