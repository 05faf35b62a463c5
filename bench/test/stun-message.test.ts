import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ATTRIBUTE, MAGIC_COOKIE, encodeBindingRequest, encodeBindingResponse, parseBindingRequest, parseBindingResponse } from '../stun/message.js';

const transactionId = Buffer.from('0102030405060708090a0b0c', 'hex');

describe('STUN Binding request', () => {
  it.each([
    { changeIp: false, changePort: false },
    { changeIp: false, changePort: true },
    { changeIp: true, changePort: false },
    { changeIp: true, changePort: true },
  ])('round-trips CHANGE-REQUEST %o', (flags) => {
    expect(parseBindingRequest(encodeBindingRequest({ transactionId, ...flags }))).toEqual({ transactionId, ...flags });
  });

  it('reads the request miniupnpd sends (28 bytes: header plus CHANGE-REQUEST, change IP and port)', () => {
    const datagram = Buffer.concat([Buffer.from('000100082112a442', 'hex'), transactionId, Buffer.from('0003000400000006', 'hex')]);
    expect(parseBindingRequest(datagram)).toEqual({ transactionId, changeIp: true, changePort: true });
  });

  it('reads a request without attributes as asking for no change', () => {
    const datagram = Buffer.concat([Buffer.from('000100002112a442', 'hex'), transactionId]);
    expect(parseBindingRequest(datagram)).toEqual({ transactionId, changeIp: false, changePort: false });
  });

  it.each([
    ['shorter than a header', Buffer.alloc(19)],
    [
      'another method (a Binding response)',
      encodeBindingResponse({ transactionId, mapped: ep('1.2.3.4', 1), origin: ep('5.6.7.8', 2), other: ep('9.9.9.9', 3) }),
    ],
    ['a wrong magic cookie', Buffer.concat([Buffer.from('0001000012345678', 'hex'), transactionId])],
    ['a body longer than the datagram', Buffer.concat([Buffer.from('000100082112a442', 'hex'), transactionId])],
    ['a body length that is not a multiple of 4', Buffer.concat([Buffer.from('000100022112a442', 'hex'), transactionId, Buffer.alloc(2)])],
  ])('ignores a datagram with %s', (_name, datagram) => {
    expect(parseBindingRequest(datagram)).toBeUndefined();
  });

  it('never throws on random bytes', () => {
    for (let i = 0; i < 2000; i += 1) expect(() => parseBindingRequest(randomBytes(i % 64))).not.toThrow();
  });
});

describe('STUN Binding response', () => {
  it('carries the mapped address plain and XORed, the origin and the other address', () => {
    const datagram = encodeBindingResponse({
      transactionId,
      mapped: ep('203.0.113.1', 40000),
      origin: ep('203.0.113.2', 3478),
      other: ep('203.0.113.3', 3479),
    });
    expect(datagram.readUInt16BE(0)).toBe(0x0101);
    expect(datagram.readUInt16BE(2)).toBe(datagram.length - 20);
    expect(datagram.readUInt32BE(4)).toBe(MAGIC_COOKIE);
    const parsed = parseBindingResponse(datagram)!;
    expect(parsed.transactionId).toEqual(transactionId);
    expect(parsed.addresses.get(ATTRIBUTE.mappedAddress)).toEqual(ep('203.0.113.1', 40000));
    expect(parsed.addresses.get(ATTRIBUTE.xorMappedAddress)).toEqual(ep('203.0.113.1', 40000));
    expect(parsed.addresses.get(ATTRIBUTE.responseOrigin)).toEqual(ep('203.0.113.2', 3478));
    expect(parsed.addresses.get(ATTRIBUTE.otherAddress)).toEqual(ep('203.0.113.3', 3479));
  });

  it('XORs the mapped address with the magic cookie (RFC 5389 §15.2 arithmetic)', () => {
    const datagram = encodeBindingResponse({ transactionId, mapped: ep('192.0.2.1', 32853), origin: ep('192.0.2.2', 3478), other: ep('192.0.2.3', 3479) });
    // XOR-MAPPED-ADDRESS is the second attribute: after the 20-byte header and the 12-byte MAPPED-ADDRESS.
    const xor = datagram.subarray(32, 44);
    expect(xor.readUInt16BE(0)).toBe(ATTRIBUTE.xorMappedAddress);
    expect(xor.readUInt16BE(6)).toBe(32853 ^ 0x2112);
    expect(xor.readUInt32BE(8)).toBe((0xc0000201 ^ MAGIC_COOKIE) >>> 0);
  });

  it('refuses a non-IPv4 address', () => {
    expect(() => encodeBindingResponse({ transactionId, mapped: ep('::1', 1), origin: ep('1.1.1.1', 2), other: ep('2.2.2.2', 3) })).toThrow(/not an IPv4/);
  });
});

function ep(address: string, port: number) {
  return { address, port };
}
